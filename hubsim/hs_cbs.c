#include "hs_cbs.h"

#include <stdio.h>
#include <string.h>

#include <proton/codec.h>

static int hs__put_string(pn_data_t *d, const char *s);
static bool hs__int_value(pn_data_t *d, int64_t *out);

int hs_cbs_request(pn_message_t *m, const char *hub, const char *device_id,
                   const char *token, uint64_t id)
{
    char name[1024];
    int n = snprintf(name, sizeof(name), "%s/devices/%s", hub, device_id);
    if (n < 0 || (size_t)n >= sizeof(name))
        return -1;
    pn_message_clear(m);
    pn_data_t *mid = pn_message_id(m);
    pn_data_t *props = pn_message_properties(m);
    pn_data_t *body = pn_message_body(m);
    if (pn_data_put_ulong(mid, id) != 0 ||
        pn_message_set_address(m, HS_CBS_NODE) != 0 ||
        pn_message_set_reply_to(m, HS_CBS_REPLY_TO) != 0)
        return -1;
    if (pn_data_put_map(props) != 0)
        return -1;
    pn_data_enter(props);
    if (hs__put_string(props, "operation") ||
        hs__put_string(props, "put-token") || hs__put_string(props, "type") ||
        hs__put_string(props, HS_CBS_TOKEN_TYPE) ||
        hs__put_string(props, "name") || hs__put_string(props, name))
        return -1;
    pn_data_exit(props);
    return hs__put_string(body, token);
}

enum hs_cbs_rc hs_cbs_reply_read(pn_message_t *m, struct hs_cbs_reply *r,
                                 const char **why)
{
    memset(r, 0, sizeof(*r));
    pn_atom_t cid = pn_message_get_correlation_id(m);
    if (cid.type != PN_ULONG) {
        *why = "no numeric correlation-id";
        return HS_CBS_DECLINED;
    }
    r->id = cid.u.as_ulong;
    pn_data_t *props = pn_message_properties(m);
    pn_data_rewind(props);
    if (!pn_data_next(props) || pn_data_type(props) != PN_MAP) {
        *why = "no application properties";
        return HS_CBS_DECLINED;
    }
    bool have_status = false;
    size_t n = pn_data_get_map(props);
    pn_data_enter(props);
    for (size_t i = 0; i + 1 < n; i += 2) {
        if (!pn_data_next(props))
            break;
        pn_bytes_t key = {0, NULL};
        if (pn_data_type(props) == PN_STRING ||
            pn_data_type(props) == PN_SYMBOL)
            key = pn_data_type(props) == PN_STRING ? pn_data_get_string(props)
                                                   : pn_data_get_symbol(props);
        if (!pn_data_next(props))
            break;
        int64_t v;
        if (key.size == 11 && memcmp(key.start, "status-code", 11) == 0 &&
            hs__int_value(props, &v) && v >= 0 && v <= 999) {
            r->status = (int)v;
            have_status = true;
        } else if (key.size == 18 &&
                   memcmp(key.start, "status-description", 18) == 0 &&
                   pn_data_type(props) == PN_STRING) {
            pn_bytes_t s = pn_data_get_string(props);
            size_t len = s.size < sizeof(r->description) - 1
                             ? s.size
                             : sizeof(r->description) - 1;
            memcpy(r->description, s.start, len);
            r->description[len] = '\0';
        }
    }
    pn_data_exit(props);
    if (!have_status) {
        *why = "no status-code";
        return HS_CBS_DECLINED;
    }
    return HS_CBS_OK;
}

enum hs_cbs_rc hs_cbs_reply_decode(pn_message_t *m, const char *bytes,
                                   size_t len, struct hs_cbs_reply *r,
                                   const char **why)
{
    pn_message_clear(m);
    /* proton asserts on empty input rather than failing. */
    if (len == 0 || pn_message_decode(m, bytes, len) != 0) {
        *why = "not an AMQP message";
        return HS_CBS_ERROR;
    }
    return hs_cbs_reply_read(m, r, why);
}

bool hs_cbs_accepted(int status)
{
    return status == 200 || status == 202;
}

static int hs__put_string(pn_data_t *d, const char *s)
{
    return pn_data_put_string(d, pn_bytes(strlen(s), s));
}

/* An integer of any AMQP width and sign, into *out. */
static bool hs__int_value(pn_data_t *d, int64_t *out)
{
    switch (pn_data_type(d)) {
    case PN_BYTE:
        *out = pn_data_get_byte(d);
        return true;
    case PN_UBYTE:
        *out = pn_data_get_ubyte(d);
        return true;
    case PN_SHORT:
        *out = pn_data_get_short(d);
        return true;
    case PN_USHORT:
        *out = pn_data_get_ushort(d);
        return true;
    case PN_INT:
        *out = pn_data_get_int(d);
        return true;
    case PN_UINT:
        *out = pn_data_get_uint(d);
        return true;
    case PN_LONG:
        *out = pn_data_get_long(d);
        return true;
    case PN_ULONG:
        if (pn_data_get_ulong(d) > INT64_MAX)
            return false;
        *out = (int64_t)pn_data_get_ulong(d);
        return true;
    default:
        return false;
    }
}
