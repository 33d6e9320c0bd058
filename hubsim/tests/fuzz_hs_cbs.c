/*
 * Fuzz target for reading $cbs answers: any bytes the peer sends on the
 * reply link go through proton's decoder and then hs_cbs_reply_read. The
 * result must be one of the three codes; an OK answer has a status in
 * range and a terminated description.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <proton/message.h>

#include "hs_cbs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pn_message_t *m;
    if (m == NULL && (m = pn_message()) == NULL)
        abort();
    struct hs_cbs_reply r;
    const char *why = NULL;
    enum hs_cbs_rc rc =
        hs_cbs_reply_decode(m, (const char *)data, size, &r, &why);
    if (rc == HS_CBS_OK) {
        if (r.status < 0 || r.status > 999 ||
            memchr(r.description, '\0', sizeof(r.description)) == NULL)
            abort();
    } else if ((rc != HS_CBS_DECLINED && rc != HS_CBS_ERROR) || !why) {
        abort();
    }
    return 0;
}
