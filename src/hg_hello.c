/*
 * Incremental TLS ClientHello parser. Two stacked byte-stream state machines:
 * the record layer reads 5-byte record headers one byte at a time and hands
 * each record's payload to the handshake layer, which walks the ClientHello
 * field by field. A field is read in one of three ways: fixed-size fields
 * (lengths, types) are accumulated big-endian into h->acc, opaque fields are
 * skipped by count, and the SNI host name is checked and copied into h->sni.
 * Every byte is consumed exactly once, whatever the split.
 */
#include "hg_hello.h"

#include <string.h>

#include "hg_units.h"

#define HG__REC_HEADER_LEN  5
#define HG__REC_MAX         16384 /* largest plaintext record payload */
#define HG__TYPE_HANDSHAKE  0x16
#define HG__HS_CLIENT_HELLO 1
#define HG__RANDOM_LEN      34 /* legacy_version (2) and random (32) */
#define HG__SID_MAX         32
#define HG__EXT_SERVER_NAME 0
#define HG__SNI_HOST_NAME   0
#define HG__SNI_MAX         255

enum hg__hello_rec {
    HG__REC_HEADER, /* reading a record header */
    HG__REC_BODY    /* inside a record's payload */
};

/* Handshake fields in the order they come. */
enum hg__hello_hs {
    HG__HS_TYPE,
    HG__HS_LEN,
    HG__HS_RANDOM,
    HG__HS_SID_LEN,
    HG__HS_SID,
    HG__HS_CS_LEN,
    HG__HS_CS,
    HG__HS_COMP_LEN,
    HG__HS_COMP,
    HG__HS_EXTS_LEN,
    HG__HS_EXT_TYPE,
    HG__HS_EXT_LEN,
    HG__HS_EXT_BODY,
    HG__HS_SNI_LIST_LEN,
    HG__HS_SNI_TYPE,
    HG__HS_SNI_NAME_LEN,
    HG__HS_SNI_NAME,
    HG__HS_DONE
};

/* How the bytes of a handshake field are consumed. */
enum hg__hello_kind { HG__FIXED, HG__SKIP, HG__NAME };

static enum hg_hello_rc
hg__hello_finish(struct hg_hello *h, enum hg_hello_rc rc, const char *reason);
static enum hg_hello_rc hg__hello_rec_header(struct hg_hello *h, uint8_t c);
static enum hg_hello_rc hg__hello_rec_type(struct hg_hello *h, uint8_t c);
static enum hg_hello_rc hg__hello_rec_open(struct hg_hello *h);
static enum hg_hello_rc hg__hello_rec_body(struct hg_hello *h,
                                           const uint8_t *buf, size_t end);
static enum hg_hello_rc hg__hello_fits(struct hg_hello *h);
static enum hg_hello_rc hg__hello_hs_feed(struct hg_hello *h,
                                          const uint8_t *buf, size_t end);
static enum hg_hello_rc hg__hello_take(struct hg_hello *h, const uint8_t *p,
                                       size_t n);
static enum hg_hello_rc hg__hello_name(struct hg_hello *h, const uint8_t *p,
                                       size_t n);
static bool hg__hello_host_char(uint8_t c);
static enum hg_hello_rc
hg__hello_expect(struct hg_hello *h, enum hg__hello_hs state, uint32_t need);
static enum hg_hello_rc hg__hello_step(struct hg_hello *h);
static enum hg_hello_rc hg__hello_hs_type(struct hg_hello *h);
static enum hg_hello_rc hg__hello_hs_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_sid_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_cs_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_comp_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_comp(struct hg_hello *h);
static enum hg_hello_rc hg__hello_exts_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_ext_type(struct hg_hello *h);
static enum hg_hello_rc hg__hello_ext_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_next_ext(struct hg_hello *h);
static enum hg_hello_rc hg__hello_sni_list_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_sni_type(struct hg_hello *h);
static enum hg_hello_rc hg__hello_sni_name_len(struct hg_hello *h);
static enum hg_hello_rc hg__hello_sni_name(struct hg_hello *h);

/* How each handshake field's bytes are consumed, by enum hg__hello_hs. */
static const uint8_t hg__hello_kinds[] = {
    [HG__HS_TYPE] = HG__FIXED,     [HG__HS_LEN] = HG__FIXED,
    [HG__HS_RANDOM] = HG__SKIP,    [HG__HS_SID_LEN] = HG__FIXED,
    [HG__HS_SID] = HG__SKIP,       [HG__HS_CS_LEN] = HG__FIXED,
    [HG__HS_CS] = HG__SKIP,        [HG__HS_COMP_LEN] = HG__FIXED,
    [HG__HS_COMP] = HG__SKIP,      [HG__HS_EXTS_LEN] = HG__FIXED,
    [HG__HS_EXT_TYPE] = HG__FIXED, [HG__HS_EXT_LEN] = HG__FIXED,
    [HG__HS_EXT_BODY] = HG__SKIP,  [HG__HS_SNI_LIST_LEN] = HG__FIXED,
    [HG__HS_SNI_TYPE] = HG__FIXED, [HG__HS_SNI_NAME_LEN] = HG__FIXED,
    [HG__HS_SNI_NAME] = HG__NAME,  [HG__HS_DONE] = HG__SKIP,
};

void hg_hello_init(struct hg_hello *h, size_t max_hello)
{
    memset(h, 0, sizeof(*h));
    h->max_hello = max_hello;
    h->rc = HG_HELLO_AGAIN;
    h->rec_state = HG__REC_HEADER;
    h->hs_state = HG__HS_TYPE;
    h->need = 1;
}

enum hg_hello_rc hg_hello_parse(struct hg_hello *h, const uint8_t *buf,
                                size_t len)
{
    /* Never look past max_hello, so any split gives the same verdict. */
    size_t end = len < h->max_hello ? len : h->max_hello;
    enum hg_hello_rc rc = h->rc;

    while (rc == HG_HELLO_AGAIN && h->pos < end) {
        if (h->rec_state == HG__REC_HEADER) {
            h->examined++;
            rc = hg__hello_rec_header(h, buf[h->pos++]);
        } else {
            rc = hg__hello_rec_body(h, buf, end);
        }
    }
    if (rc == HG_HELLO_AGAIN && len > h->max_hello)
        rc = hg__hello_finish(h, HG_HELLO_ERROR, "too_big");
    return rc;
}

/* Records the final verdict so later calls repeat it; returns rc. */
static enum hg_hello_rc
hg__hello_finish(struct hg_hello *h, enum hg_hello_rc rc, const char *reason)
{
    h->rc = (uint8_t)rc;
    h->reason = reason;
    if (rc == HG_HELLO_OK)
        h->hello_len = h->pos;
    return rc;
}

/*
 * Checks one record header byte as soon as it arrives, so garbage is refused
 * on its first byte. Returns AGAIN to go on, or the final verdict.
 */
static enum hg_hello_rc hg__hello_rec_header(struct hg_hello *h, uint8_t c)
{
    switch (h->rec_got++) {
    case 0:
        return hg__hello_rec_type(h, c);
    case 1:
        if (c != 3)
            return hg__hello_finish(h, HG_HELLO_ERROR, "bad_version");
        return HG_HELLO_AGAIN;
    case 2: /* minor version: any */
        return HG_HELLO_AGAIN;
    case 3:
        h->rec_len = (uint16_t)(c << 8);
        return HG_HELLO_AGAIN;
    default:
        h->rec_len |= c;
        return hg__hello_rec_open(h);
    }
}

/*
 * Judges a record's content type. On the very first byte of the stream this
 * tells TLS from other protocols: TLS content types (20 to 24) other than
 * handshake are TLS we refuse, anything else is not TLS. Returns AGAIN for a
 * handshake record, else the final verdict.
 */
static enum hg_hello_rc hg__hello_rec_type(struct hg_hello *h, uint8_t c)
{
    if (c == HG__TYPE_HANDSHAKE)
        return HG_HELLO_AGAIN;
    if (h->rec_end != 0 || (c >= 20 && c <= 24)) /* not the first record */
        return hg__hello_finish(h, HG_HELLO_ERROR, "not_handshake");
    if (c & 0x80)
        return hg__hello_finish(h, HG_HELLO_DECLINED, "sslv2");
    return hg__hello_finish(h, HG_HELLO_DECLINED, "not_tls");
}

/*
 * Starts a record's payload once its header is complete. Returns AGAIN, or
 * ERROR for a length TLS forbids or one that cannot fit in max_hello.
 */
static enum hg_hello_rc hg__hello_rec_open(struct hg_hello *h)
{
    if (h->rec_len == 0 || h->rec_len > HG__REC_MAX)
        return hg__hello_finish(h, HG_HELLO_ERROR, "bad_record");
    h->rec_state = HG__REC_BODY;
    h->rec_got = 0;
    h->rec_end = h->pos + h->rec_len;
    return hg__hello_fits(h);
}

/*
 * Consumes record payload up to the record's end or buffer offset end,
 * whichever comes first: handshake bytes go to the handshake layer, bytes
 * after the ClientHello in its last record are skipped. Returns AGAIN, or
 * the final verdict, OK once the record that ends the hello is all in.
 */
static enum hg_hello_rc hg__hello_rec_body(struct hg_hello *h,
                                           const uint8_t *buf, size_t end)
{
    if (end > h->rec_end)
        end = h->rec_end;
    if (h->hs_state != HG__HS_DONE) {
        enum hg_hello_rc rc = hg__hello_hs_feed(h, buf, end);
        if (rc != HG_HELLO_AGAIN)
            return rc;
    }
    if (h->hs_state == HG__HS_DONE) {
        h->examined += end - h->pos;
        h->pos = end;
    }
    if (h->pos < h->rec_end)
        return HG_HELLO_AGAIN;
    if (h->hs_state == HG__HS_DONE)
        return hg__hello_finish(h, HG_HELLO_OK, NULL);
    h->rec_state = HG__REC_HEADER;
    return HG_HELLO_AGAIN;
}

/*
 * Refuses, as early as the lengths allow, a hello that cannot fit in
 * max_hello: the current record must end inside it, and so must the rest of
 * the handshake message with the fewest record headers it could need.
 * Returns AGAIN if it may fit, ERROR too_big if not.
 */
static enum hg_hello_rc hg__hello_fits(struct hg_hello *h)
{
    size_t end = h->rec_end;

    if (h->hs_state > HG__HS_LEN && h->hs_state != HG__HS_DONE) {
        size_t in_rec = h->rec_end - h->pos;
        if (h->msg_left > in_rec) {
            size_t rest = h->msg_left - in_rec;
            size_t recs = (rest + HG__REC_MAX - 1) / HG__REC_MAX;
            end += rest + recs * HG__REC_HEADER_LEN;
        }
    }
    if (end > h->max_hello)
        return hg__hello_finish(h, HG_HELLO_ERROR, "too_big");
    return HG_HELLO_AGAIN;
}

/*
 * Feeds handshake bytes from h->pos up to buffer offset end (inside one
 * record) to the handshake fields, stepping to the next field each time one
 * is complete. Stops early when the ClientHello is complete. Returns AGAIN,
 * or ERROR for a malformed message.
 */
static enum hg_hello_rc hg__hello_hs_feed(struct hg_hello *h,
                                          const uint8_t *buf, size_t end)
{
    for (;;) {
        while (h->got == h->need && h->hs_state != HG__HS_DONE) {
            enum hg_hello_rc rc = hg__hello_step(h);
            if (rc != HG_HELLO_AGAIN)
                return rc;
        }
        if (h->hs_state == HG__HS_DONE || h->pos == end)
            return HG_HELLO_AGAIN;
        size_t n = h->need - h->got;
        if (n > end - h->pos)
            n = end - h->pos;
        enum hg_hello_rc rc = hg__hello_take(h, buf + h->pos, n);
        if (rc != HG_HELLO_AGAIN)
            return rc;
        h->got += (uint32_t)n;
        h->pos += n;
        h->examined += n;
        if (h->hs_state > HG__HS_LEN)
            h->msg_left -= (uint32_t)n;
    }
}

/*
 * Consumes n bytes of the current field, all belonging to it. Returns AGAIN,
 * or ERROR if a host name byte is not allowed.
 */
static enum hg_hello_rc hg__hello_take(struct hg_hello *h, const uint8_t *p,
                                       size_t n)
{
    switch (hg__hello_kinds[h->hs_state]) {
    case HG__FIXED:
        for (size_t i = 0; i < n; i++)
            h->acc = h->acc << 8 | p[i];
        return HG_HELLO_AGAIN;
    case HG__NAME:
        return hg__hello_name(h, p, n);
    default:
        return HG_HELLO_AGAIN;
    }
}

/*
 * Checks and appends n bytes of the host name, which was sized to fit sni.
 * Returns AGAIN, or ERROR bad_sni on a byte a host name cannot hold.
 */
static enum hg_hello_rc hg__hello_name(struct hg_hello *h, const uint8_t *p,
                                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!hg__hello_host_char(p[i]))
            return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
        h->sni[h->sni_len++] = (char)p[i];
    }
    return HG_HELLO_AGAIN;
}

/* True for the bytes a DNS host name may hold: letters, digits, - . _ */
static bool hg__hello_host_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/*
 * Moves to the next handshake field, of need bytes. Every field after the
 * handshake header must lie inside the message, so a field cannot straddle
 * its end. Returns AGAIN, or ERROR malformed if the message is too short.
 */
static enum hg_hello_rc hg__hello_expect(struct hg_hello *h,
                                         enum hg__hello_hs state, uint32_t need)
{
    if (state > HG__HS_LEN && need > h->msg_left)
        return hg__hello_finish(h, HG_HELLO_ERROR, "malformed");
    h->hs_state = (uint8_t)state;
    h->need = need;
    h->got = 0;
    h->acc = 0;
    return HG_HELLO_AGAIN;
}

/*
 * Acts on a completed handshake field: one small function per field checks
 * it and picks the next one. Returns AGAIN, or ERROR.
 */
static enum hg_hello_rc hg__hello_step(struct hg_hello *h)
{
    switch (h->hs_state) {
    case HG__HS_TYPE:
        return hg__hello_hs_type(h);
    case HG__HS_LEN:
        return hg__hello_hs_len(h);
    case HG__HS_RANDOM:
        return hg__hello_expect(h, HG__HS_SID_LEN, 1);
    case HG__HS_SID_LEN:
        return hg__hello_sid_len(h);
    case HG__HS_SID:
        return hg__hello_expect(h, HG__HS_CS_LEN, 2);
    case HG__HS_CS_LEN:
        return hg__hello_cs_len(h);
    case HG__HS_CS:
        return hg__hello_expect(h, HG__HS_COMP_LEN, 1);
    case HG__HS_COMP_LEN:
        return hg__hello_comp_len(h);
    case HG__HS_COMP:
        return hg__hello_comp(h);
    case HG__HS_EXTS_LEN:
        return hg__hello_exts_len(h);
    case HG__HS_EXT_TYPE:
        return hg__hello_ext_type(h);
    case HG__HS_EXT_LEN:
        return hg__hello_ext_len(h);
    case HG__HS_SNI_LIST_LEN:
        return hg__hello_sni_list_len(h);
    case HG__HS_SNI_TYPE:
        return hg__hello_sni_type(h);
    case HG__HS_SNI_NAME_LEN:
        return hg__hello_sni_name_len(h);
    case HG__HS_SNI_NAME:
        return hg__hello_sni_name(h);
    default: /* HG__HS_EXT_BODY */
        return hg__hello_next_ext(h);
    }
}

/* The first handshake message must be a ClientHello. AGAIN or ERROR. */
static enum hg_hello_rc hg__hello_hs_type(struct hg_hello *h)
{
    if (h->acc != HG__HS_CLIENT_HELLO)
        return hg__hello_finish(h, HG_HELLO_ERROR, "not_client_hello");
    return hg__hello_expect(h, HG__HS_LEN, 3);
}

/*
 * The message length is the first point where an oversized hello shows, so
 * the size cap is applied here. AGAIN, or ERROR too_big or malformed.
 */
static enum hg_hello_rc hg__hello_hs_len(struct hg_hello *h)
{
    h->msg_left = h->acc;
    h->hs_state = HG__HS_RANDOM; /* message length now known */
    enum hg_hello_rc rc = hg__hello_fits(h);
    if (rc != HG_HELLO_AGAIN)
        return rc;
    return hg__hello_expect(h, HG__HS_RANDOM, HG__RANDOM_LEN);
}

/* legacy_session_id holds at most 32 bytes. AGAIN or ERROR. */
static enum hg_hello_rc hg__hello_sid_len(struct hg_hello *h)
{
    if (h->acc > HG__SID_MAX)
        return hg__hello_finish(h, HG_HELLO_ERROR, "malformed");
    return hg__hello_expect(h, HG__HS_SID, h->acc);
}

/* Cipher suites are 2 bytes each, at least one. AGAIN or ERROR. */
static enum hg_hello_rc hg__hello_cs_len(struct hg_hello *h)
{
    if (h->acc == 0 || h->acc % 2 != 0)
        return hg__hello_finish(h, HG_HELLO_ERROR, "malformed");
    return hg__hello_expect(h, HG__HS_CS, h->acc);
}

/* At least one compression method. AGAIN or ERROR. */
static enum hg_hello_rc hg__hello_comp_len(struct hg_hello *h)
{
    if (h->acc == 0)
        return hg__hello_finish(h, HG_HELLO_ERROR, "malformed");
    return hg__hello_expect(h, HG__HS_COMP, h->acc);
}

/*
 * A message may end after the compression methods (no extensions at all);
 * otherwise the extensions block follows. AGAIN or ERROR.
 */
static enum hg_hello_rc hg__hello_comp(struct hg_hello *h)
{
    if (h->msg_left == 0)
        return hg__hello_expect(h, HG__HS_DONE, 0);
    return hg__hello_expect(h, HG__HS_EXTS_LEN, 2);
}

/*
 * The extensions block must fill the rest of the message exactly, so from
 * here msg_left also counts what is left of the block. AGAIN or ERROR.
 */
static enum hg_hello_rc hg__hello_exts_len(struct hg_hello *h)
{
    if (h->acc != h->msg_left)
        return hg__hello_finish(h, HG_HELLO_ERROR, "malformed");
    return hg__hello_next_ext(h);
}

/* Only one server_name extension is allowed. AGAIN or ERROR. */
static enum hg_hello_rc hg__hello_ext_type(struct hg_hello *h)
{
    h->ext_type = (uint16_t)h->acc;
    if (h->ext_type == HG__EXT_SERVER_NAME) {
        if (h->has_sni)
            return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
        h->has_sni = true;
    }
    return hg__hello_expect(h, HG__HS_EXT_LEN, 2);
}

/*
 * An extension must fit in the block. server_name is read field by field,
 * any other extension is skipped. AGAIN or ERROR.
 */
static enum hg_hello_rc hg__hello_ext_len(struct hg_hello *h)
{
    h->ext_len = (uint16_t)h->acc;
    if (h->ext_len > h->msg_left)
        return hg__hello_finish(h, HG_HELLO_ERROR, "malformed");
    if (h->ext_type != HG__EXT_SERVER_NAME)
        return hg__hello_expect(h, HG__HS_EXT_BODY, h->ext_len);
    if (h->ext_len < 2)
        return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
    return hg__hello_expect(h, HG__HS_SNI_LIST_LEN, 2);
}

/* After an extension: another one, or the end of the message. AGAIN/ERROR. */
static enum hg_hello_rc hg__hello_next_ext(struct hg_hello *h)
{
    if (h->msg_left == 0)
        return hg__hello_expect(h, HG__HS_DONE, 0);
    return hg__hello_expect(h, HG__HS_EXT_TYPE, 2);
}

/*
 * The server_name list must fill the extension and, since only one
 * host_name is allowed, hold exactly one non-empty entry. AGAIN or ERROR.
 */
static enum hg_hello_rc hg__hello_sni_list_len(struct hg_hello *h)
{
    if (h->acc + 2 != h->ext_len || h->acc < 4)
        return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
    h->list_len = (uint16_t)h->acc;
    return hg__hello_expect(h, HG__HS_SNI_TYPE, 1);
}

/* The entry must be a host_name. AGAIN or ERROR. */
static enum hg_hello_rc hg__hello_sni_type(struct hg_hello *h)
{
    if (h->acc != HG__SNI_HOST_NAME)
        return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
    return hg__hello_expect(h, HG__HS_SNI_NAME_LEN, 2);
}

/*
 * The host name must fill the list entry and fit in sni with its NUL.
 * AGAIN or ERROR.
 */
static enum hg_hello_rc hg__hello_sni_name_len(struct hg_hello *h)
{
    if (h->acc + 3 != h->list_len || h->acc > HG__SNI_MAX)
        return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
    h->sni_len = 0;
    return hg__hello_expect(h, HG__HS_SNI_NAME, h->acc);
}

/*
 * The host name is complete: it must be made of host name labels, 253
 * bytes at most (with one trailing dot more), so that no empty label
 * ("a..b") can stretch a wildcard route and every name a route could hold
 * is routed. Terminate it and go on. AGAIN or ERROR.
 */
static enum hg_hello_rc hg__hello_sni_name(struct hg_hello *h)
{
    const char *reason;
    size_t n = h->sni_len;
    if (n > 1 && h->sni[n - 1] == '.')
        n--;
    if (n > HG_HOSTNAME_MAX || hg_hostname_labels(h->sni, n, &reason) != 0)
        return hg__hello_finish(h, HG_HELLO_ERROR, "bad_sni");
    h->sni[h->sni_len] = '\0';
    return hg__hello_next_ext(h);
}
