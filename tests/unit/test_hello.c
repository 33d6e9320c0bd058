/*
 * Tests for the incremental ClientHello parser. The vectors are assembled by
 * a small builder (SNI, key_share, padding and an opaque extension in a
 * chosen order), then framed into TLS records cut at chosen offsets and fed
 * to the parser whole, in two pieces, or one byte at a time. One vector is
 * a real hello captured from openssl s_client, kept in the fuzz corpus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hg_hello.h"

#define MSG_MAX    (96 * 1024)
#define WIRE_MAX   (104 * 1024)
#define REC_MAX    16384
#define CUTS_MAX   8
#define HUB        "hub-a.azure-devices.net"
#define EXT_OPAQUE 0xfe77 /* an extension type the parser does not know */

/* What the builder puts in a ClientHello. */
struct spec {
    const char *sni;   /* host_name, NULL for no server_name extension */
    size_t sni_len;    /* 0: strlen(sni) */
    size_t key_share;  /* key_share extension body bytes, 0: none */
    size_t padding;    /* padding extension body bytes, 0: none */
    size_t opaque;     /* body bytes of an unknown extension, 0: none */
    const char *order; /* s=server_name g=groups k=key_share p=padding
                          o=opaque; NULL: "sgkp" with o first if any */
    int no_exts;       /* end the message after compression methods */
};

/* Where the builder put things, offsets into the handshake message. */
struct layout {
    size_t len;      /* message length, header included */
    size_t sid_len;  /* legacy_session_id length byte */
    size_t cs_len;   /* cipher_suites length */
    size_t comp_len; /* compression methods length byte */
    size_t exts_len; /* extensions block length */
    size_t sni_ext;  /* server_name extension type */
    size_t sni_name; /* first byte of the host name */
};

/* One complete parse and what came out of it. */
struct result {
    enum hg_hello_rc rc;
    const char *reason;
    char sni[256];
    size_t sni_len;
    int has_sni;
    size_t hello_len;
};

static uint8_t msg[MSG_MAX];
static uint8_t wire[WIRE_MAX];
static uint8_t wire2[WIRE_MAX];

static void put16(uint8_t *p, size_t v);
static void put24(uint8_t *p, size_t v);
static size_t ext_begin(uint8_t *p, size_t at, unsigned type, size_t len);
static size_t ext_fill(uint8_t *p, size_t at, unsigned type, size_t len);
static size_t ext_key_share(uint8_t *p, size_t at, size_t len);
static size_t ext_sni(uint8_t *p, size_t at, const struct spec *s,
                      struct layout *l);
static size_t build(const struct spec *s, struct layout *l);
static size_t frame(const uint8_t *m, size_t len, const size_t *cuts,
                    size_t ncuts, uint8_t *out);
static size_t build_wire(const struct spec *s, struct layout *l);
static void refix(struct layout *l, uint8_t *m);
static struct result parse_steps(const uint8_t *buf, size_t len, size_t step,
                                 size_t max);
static struct result parse_cut(const uint8_t *buf, size_t len, size_t cut,
                               size_t max);
static void expect_same(const struct result *a, const struct result *b);
static void expect_ok(const struct result *r, const char *sni, size_t len);
static void expect_err(const uint8_t *buf, size_t len, enum hg_hello_rc rc,
                       const char *reason);
static size_t load_corpus(const char *name, uint8_t *out, size_t cap);

/* Writes a 16-bit big-endian value. */
static void put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Writes a 24-bit big-endian value. */
static void put24(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 16);
    put16(p + 1, v);
}

/* Writes an extension header at p + at; returns the offset of its body. */
static size_t ext_begin(uint8_t *p, size_t at, unsigned type, size_t len)
{
    put16(p + at, type);
    put16(p + at + 2, len);
    return at + 4;
}

/* Writes an extension with a patterned body; returns the offset after it. */
static size_t ext_fill(uint8_t *p, size_t at, unsigned type, size_t len)
{
    at = ext_begin(p, at, type, len);
    for (size_t i = 0; i < len; i++)
        p[at + i] = (uint8_t)(type == 21 ? 0 : i * 7);
    return at + len;
}

/* Writes a key_share of len body bytes with one share; returns the end. */
static size_t ext_key_share(uint8_t *p, size_t at, size_t len)
{
    size_t end = ext_fill(p, at, 51, len);
    put16(p + at + 4, len - 2);
    put16(p + at + 6, 0x11ec); /* X25519MLKEM768 */
    put16(p + at + 8, len - 6);
    return end;
}

/* Writes server_name with one host_name; returns the offset after it. */
static size_t ext_sni(uint8_t *p, size_t at, const struct spec *s,
                      struct layout *l)
{
    size_t n = s->sni_len ? s->sni_len : strlen(s->sni);
    l->sni_ext = at;
    at = ext_begin(p, at, 0, n + 5);
    put16(p + at, n + 3);
    p[at + 2] = 0;
    put16(p + at + 3, n);
    l->sni_name = at + 5;
    memcpy(p + at + 5, s->sni, n);
    return at + 5 + n;
}

/* Assembles the ClientHello handshake message s describes into msg. */
static size_t build(const struct spec *s, struct layout *l)
{
    static const char def[] = "sgkp", def_opaque[] = "osgkp";
    const char *order = s->order ? s->order : s->opaque ? def_opaque : def;
    size_t at = 4;

    memset(l, 0, sizeof(*l));
    msg[0] = 1;
    put16(msg + at, 0x0303);
    for (at += 2; at < 38; at++)
        msg[at] = (uint8_t)(at * 13);
    l->sid_len = at;
    msg[at++] = 32;
    memset(msg + at, 0xab, 32);
    at += 32;
    l->cs_len = at;
    put16(msg + at, 6);
    put16(msg + at + 2, 0x1301);
    put16(msg + at + 4, 0x1302);
    put16(msg + at + 6, 0x1303);
    at += 8;
    l->comp_len = at;
    msg[at++] = 1;
    msg[at++] = 0;
    if (!s->no_exts) {
        l->exts_len = at;
        at += 2;
        for (const char *c = order; *c != '\0'; c++) {
            if (*c == 's')
                at = ext_sni(msg, at, s, l);
            else if (*c == 'g')
                at = ext_fill(msg, at, 10, 8);
            else if (*c == 'k' && s->key_share)
                at = ext_key_share(msg, at, s->key_share);
            else if (*c == 'p' && s->padding)
                at = ext_fill(msg, at, 21, s->padding);
            else if (*c == 'o' && s->opaque)
                at = ext_fill(msg, at, EXT_OPAQUE, s->opaque);
        }
        put16(msg + l->exts_len, at - l->exts_len - 2);
    }
    put24(msg + 1, at - 4);
    l->len = at;
    return at;
}

/*
 * Wraps a handshake message in handshake records, starting a new record at
 * each message offset in cuts (ascending) and wherever one would exceed
 * 16384 bytes. Returns the bytes written to out.
 */
static size_t frame(const uint8_t *m, size_t len, const size_t *cuts,
                    size_t ncuts, uint8_t *out)
{
    size_t in = 0, o = 0, c = 0;

    while (in < len) {
        size_t end = in + REC_MAX < len ? in + REC_MAX : len;
        while (c < ncuts && cuts[c] <= in)
            c++;
        if (c < ncuts && cuts[c] < end)
            end = cuts[c];
        out[o] = 0x16;
        put16(out + o + 1, 0x0301);
        put16(out + o + 3, end - in);
        memcpy(out + o + 5, m + in, end - in);
        o += 5 + end - in;
        in = end;
    }
    return o;
}

/* Builds the message for s into msg and frames it into wire. */
static size_t build_wire(const struct spec *s, struct layout *l)
{
    size_t len = build(s, l);
    return frame(msg, len, NULL, 0, wire);
}

/* After a test edits m, keeps the handshake length in step with l->len. */
static void refix(struct layout *l, uint8_t *m)
{
    put24(m + 1, l->len - 4);
}

/*
 * Feeds buf to a fresh parser step bytes more each call (0: all at once),
 * checking that no byte is examined twice. Returns the outcome.
 */
static struct result parse_steps(const uint8_t *buf, size_t len, size_t step,
                                 size_t max)
{
    struct hg_hello h;
    struct result r;
    size_t have = 0;

    hg_hello_init(&h, max);
    do {
        have = step == 0 || len - have < step ? len : have + step;
        r.rc = hg_hello_parse(&h, buf, have);
        assert_true(h.examined <= have);
        if (r.rc == HG_HELLO_AGAIN && have <= max)
            assert_int_equal(h.examined, have);
    } while (r.rc == HG_HELLO_AGAIN && have < len);
    assert_int_equal(hg_hello_parse(&h, buf, len), r.rc);
    r.reason = h.reason;
    memcpy(r.sni, h.sni, sizeof(r.sni));
    r.sni_len = h.sni_len;
    r.has_sni = h.has_sni;
    r.hello_len = h.hello_len;
    if (r.rc == HG_HELLO_OK)
        assert_int_equal(h.examined, h.hello_len);
    return r;
}

/* Feeds buf in two calls, the first with cut bytes. Returns the outcome. */
static struct result parse_cut(const uint8_t *buf, size_t len, size_t cut,
                               size_t max)
{
    struct hg_hello h;
    struct result r;

    hg_hello_init(&h, max);
    r.rc = hg_hello_parse(&h, buf, cut);
    if (r.rc == HG_HELLO_AGAIN)
        r.rc = hg_hello_parse(&h, buf, len);
    r.reason = h.reason;
    memcpy(r.sni, h.sni, sizeof(r.sni));
    r.sni_len = h.sni_len;
    r.has_sni = h.has_sni;
    r.hello_len = h.hello_len;
    return r;
}

/* Asserts two parses came out the same. */
static void expect_same(const struct result *a, const struct result *b)
{
    assert_int_equal(a->rc, b->rc);
    if (a->rc == HG_HELLO_OK) {
        assert_int_equal(a->has_sni, b->has_sni);
        assert_int_equal(a->sni_len, b->sni_len);
        assert_memory_equal(a->sni, b->sni, a->sni_len + 1);
        assert_int_equal(a->hello_len, b->hello_len);
    } else if (a->rc != HG_HELLO_AGAIN) {
        assert_string_equal(a->reason, b->reason);
    }
}

/* Asserts an OK parse with the given SNI (NULL: none) and hello_len. */
static void expect_ok(const struct result *r, const char *sni, size_t len)
{
    assert_int_equal(r->rc, HG_HELLO_OK);
    assert_null(r->reason);
    assert_int_equal(r->hello_len, len);
    if (sni == NULL) {
        assert_false(r->has_sni);
        assert_int_equal(r->sni_len, 0);
        return;
    }
    assert_true(r->has_sni);
    assert_int_equal(r->sni_len, strlen(sni));
    assert_string_equal(r->sni, sni);
}

/* Asserts buf gives rc/reason whole, byte by byte and at every cut. */
static void expect_err(const uint8_t *buf, size_t len, enum hg_hello_rc rc,
                       const char *reason)
{
    struct result whole = parse_steps(buf, len, 0, HG_HELLO_MAX_DEFAULT);
    struct result bytes = parse_steps(buf, len, 1, HG_HELLO_MAX_DEFAULT);

    assert_int_equal(whole.rc, rc);
    assert_string_equal(whole.reason, reason);
    expect_same(&whole, &bytes);
    for (size_t cut = 0; cut <= len && len < 4096; cut++) {
        struct result r = parse_cut(buf, len, cut, HG_HELLO_MAX_DEFAULT);
        expect_same(&whole, &r);
    }
}

/* Reads tests/fuzz/corpus/hello/NAME next to this file; returns its size. */
static size_t load_corpus(const char *name, uint8_t *out, size_t cap)
{
    char path[4096];
    const char *slash = strrchr(__FILE__, '/');
    int dir = slash ? (int)(slash - __FILE__) : 0;

    snprintf(path, sizeof(path), "%.*s%s../fuzz/corpus/hello/%s", dir, __FILE__,
             slash ? "/" : "", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    size_t n = fread(out, 1, cap, f);
    fclose(f);
    return n;
}

static void test_openssl_hello(void **state)
{
    size_t len = load_corpus("openssl_sni", wire, sizeof(wire));
    struct result r;

    assert_true(len > 200);
    r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    for (size_t cut = 0; cut <= len; cut++) {
        r = parse_cut(wire, len, cut, HG_HELLO_MAX_DEFAULT);
        expect_ok(&r, HUB, len);
    }
}

static void test_whole(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 1250, .padding = 400};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);

    expect_ok(&r, HUB, len);
}

static void test_byte_at_a_time(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 1250, .padding = 400};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);

    expect_ok(&r, HUB, len);
}

static void test_split_1400(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 1250, .padding = 500};
    struct layout l;
    size_t len = build_wire(&s, &l);

    assert_true(len > 1800 && len < 2000);
    struct result r = parse_steps(wire, len, 1400, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
}

static void test_two_records_cut_in_sni(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 1250, .padding = 400};
    struct layout l;
    size_t mlen = build(&s, &l);
    size_t cuts[] = {l.sni_name + 5};
    size_t len = frame(msg, mlen, cuts, 1, wire);

    assert_int_equal(len, mlen + 10);
    struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
}

static void test_padding_6500(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 1250, .padding = 5150};
    struct layout l;
    size_t len = build_wire(&s, &l);

    assert_true(len > 6400 && len < 6700);
    assert_int_equal(len, l.len + 5); /* one record */
    struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 1460, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
}

static void test_sni_past_4097(void **state)
{
    struct spec s = {.sni = HUB, .opaque = 4500, .key_share = 100};
    struct layout l;
    size_t len = build_wire(&s, &l);

    assert_true(5 + l.sni_name + strlen(HUB) > 4097);
    struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 4097, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
}

static void test_too_big_70k(void **state)
{
    struct spec s = {.sni = HUB, .opaque = 35000, .padding = 35000};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct hg_hello h;

    assert_true(l.len > 70000);
    assert_int_equal(len, l.len + 5 * 5);
    hg_hello_init(&h, HG_HELLO_MAX_DEFAULT);
    assert_int_equal(hg_hello_parse(&h, wire, 8), HG_HELLO_AGAIN);
    assert_int_equal(hg_hello_parse(&h, wire, 9), HG_HELLO_ERROR);
    assert_string_equal(h.reason, "too_big");
    assert_int_equal(hg_hello_parse(&h, wire, len), HG_HELLO_ERROR);
    expect_err(wire, len, HG_HELLO_ERROR, "too_big");
}

static void test_fits_exactly(void **state)
{
    struct spec s = {.sni = HUB, .opaque = 30000, .padding = 30000};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r;

    r = parse_steps(wire, len, 0, len);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 1, len);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len, 0, len - 1);
    assert_int_equal(r.rc, HG_HELLO_ERROR);
    assert_string_equal(r.reason, "too_big");
}

static void test_len_over_max(void **state)
{
    static const uint8_t hdr[] = {0x16, 0x03, 0x01, 0x00, 0x10};
    struct hg_hello h;

    hg_hello_init(&h, 4);
    assert_int_equal(hg_hello_parse(&h, hdr, 4), HG_HELLO_AGAIN);
    assert_int_equal(hg_hello_parse(&h, hdr, 5), HG_HELLO_ERROR);
    assert_string_equal(h.reason, "too_big");
    /* The record ends at offset 21: refused from its header under 21. */
    hg_hello_init(&h, 20);
    assert_int_equal(hg_hello_parse(&h, hdr, 5), HG_HELLO_ERROR);
    assert_string_equal(h.reason, "too_big");
    hg_hello_init(&h, 21);
    assert_int_equal(hg_hello_parse(&h, hdr, 5), HG_HELLO_AGAIN);
}

/*
 * Nothing past max_hello is looked at, even before the handshake length is
 * known: here the first record holds one byte and the second record's bad
 * version byte lies just past the cap.
 */
static void test_cap_before_length(void **state)
{
    struct spec s = {.sni = HUB};
    struct layout l;
    size_t cuts[] = {1};
    size_t len;
    struct result r;

    build(&s, &l);
    len = frame(msg, l.len, cuts, 1, wire);
    wire[7] = 0x02;
    r = parse_steps(wire, len, 0, 7);
    assert_int_equal(r.rc, HG_HELLO_ERROR);
    assert_string_equal(r.reason, "too_big");
    r = parse_steps(wire, len, 1, 7);
    assert_string_equal(r.reason, "too_big");
    r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);
    assert_string_equal(r.reason, "bad_version");
}

static void test_header_only(void **state)
{
    static const uint8_t hdr[] = {0x16, 0x03, 0x01, 0x40, 0x00};
    struct hg_hello h;

    hg_hello_init(&h, HG_HELLO_MAX_DEFAULT);
    assert_int_equal(hg_hello_parse(&h, hdr, 0), HG_HELLO_AGAIN);
    assert_int_equal(hg_hello_parse(&h, hdr, 5), HG_HELLO_AGAIN);
    assert_int_equal(hg_hello_parse(&h, hdr, 5), HG_HELLO_AGAIN);
    assert_null(h.reason);
}

static void test_no_sni(void **state)
{
    struct spec s = {.order = "gkp", .key_share = 100, .padding = 10};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);

    expect_ok(&r, NULL, len);
    r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, NULL, len);
}

static void test_no_extensions(void **state)
{
    struct spec s = {.no_exts = 1};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);

    expect_ok(&r, NULL, len);
}

static void test_empty_extensions(void **state)
{
    struct spec s = {.order = ""};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);

    expect_ok(&r, NULL, len);
}

static void test_case_kept(void **state)
{
    struct spec s = {.sni = "Hub-A.Azure_Devices.NET", .order = "gs"};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);

    expect_ok(&r, "Hub-A.Azure_Devices.NET", len);
}

static void test_sni_253(void **state)
{
    char name[256];
    struct spec s = {.sni = name};
    struct layout l;

    /* Labels of 63 bytes, the longest a label may be, 253 bytes in all,
     * the longest a name may be, and a trailing dot. */
    memset(name, 'a', 253);
    name[63] = name[127] = name[191] = '.';
    name[253] = '.';
    name[254] = '\0';
    size_t len = build_wire(&s, &l);
    struct result r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, name, len);
    /* One byte more is no host name, with or without the dot. */
    name[253] = 'a';
    len = build_wire(&s, &l);
    expect_err(wire, len, HG_HELLO_ERROR, "bad_sni");
    name[254] = '.';
    name[255] = '\0';
    len = build_wire(&s, &l);
    expect_err(wire, len, HG_HELLO_ERROR, "bad_sni");
}

static void test_not_tls(void **state)
{
    static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const uint8_t mqtt[] = {0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T'};
    static const uint8_t amqp[] = {'A', 'M', 'Q', 'P', 0, 1, 0, 0};

    expect_err((const uint8_t *)get, strlen(get), HG_HELLO_DECLINED, "not_tls");
    expect_err(mqtt, sizeof(mqtt), HG_HELLO_DECLINED, "not_tls");
    expect_err(amqp, sizeof(amqp), HG_HELLO_DECLINED, "not_tls");
    expect_err((const uint8_t *)"G", 1, HG_HELLO_DECLINED, "not_tls");
}

static void test_sslv2(void **state)
{
    static const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15,
                                 0x00, 0x00, 0x00, 0x10, 0x07, 0x00, 0xc0};

    expect_err(v2, sizeof(v2), HG_HELLO_DECLINED, "sslv2");
}

static void test_record_length(void **state)
{
    static const uint8_t zero[] = {0x16, 0x03, 0x01, 0x00, 0x00, 0x01};
    static const uint8_t over[] = {0x16, 0x03, 0x03, 0x40, 0x01, 0x01};
    static const uint8_t max[] = {0x16, 0x03, 0x03, 0x40, 0x00, 0x01};
    struct result r;

    expect_err(zero, sizeof(zero), HG_HELLO_ERROR, "bad_record");
    expect_err(over, sizeof(over), HG_HELLO_ERROR, "bad_record");
    r = parse_steps(max, sizeof(max), 1, HG_HELLO_MAX_DEFAULT);
    assert_int_equal(r.rc, HG_HELLO_AGAIN);
}

static void test_bad_version(void **state)
{
    static const uint8_t v2[] = {0x16, 0x02, 0x00, 0x00, 0x10};
    static const uint8_t v4[] = {0x16, 0x04, 0x01, 0x00, 0x10};

    expect_err(v2, sizeof(v2), HG_HELLO_ERROR, "bad_version");
    expect_err(v4, sizeof(v4), HG_HELLO_ERROR, "bad_version");
}

static void test_not_client_hello(void **state)
{
    struct spec s = {.sni = HUB};
    struct layout l;
    size_t len;

    build(&s, &l);
    msg[0] = 2;
    len = frame(msg, l.len, NULL, 0, wire);
    expect_err(wire, len, HG_HELLO_ERROR, "not_client_hello");
}

static void test_alert(void **state)
{
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
    static const uint8_t ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
    struct spec s = {.sni = HUB};
    struct layout l;
    size_t cuts[] = {100};
    size_t len;

    expect_err(alert, sizeof(alert), HG_HELLO_ERROR, "not_handshake");
    expect_err(ccs, sizeof(ccs), HG_HELLO_ERROR, "not_handshake");
    build(&s, &l);
    len = frame(msg, l.len, cuts, 1, wire);
    wire[105] = 0x15; /* second record becomes an alert */
    expect_err(wire, len, HG_HELLO_ERROR, "not_handshake");
}

/* A message edit that must be refused; applied to a fresh default hello. */
struct bad_case {
    const char *what;
    const char *reason;
    void (*edit)(struct layout *l);
};

static void edit_sid_33(struct layout *l)
{
    msg[l->sid_len] = 33;
}

static void edit_cs_odd(struct layout *l)
{
    put16(msg + l->cs_len, 5);
}

static void edit_cs_zero(struct layout *l)
{
    put16(msg + l->cs_len, 0);
}

static void edit_comp_zero(struct layout *l)
{
    msg[l->comp_len] = 0;
}

static void edit_exts_long(struct layout *l)
{
    put16(msg + l->exts_len, l->len - l->exts_len - 1);
}

static void edit_exts_short(struct layout *l)
{
    put16(msg + l->exts_len, l->len - l->exts_len - 3);
}

static void edit_ext_overrun(struct layout *l)
{
    /* The last extension (8 bytes of padding) claims one byte more. */
    put16(msg + l->len - 10, 9);
}

static void edit_trailing(struct layout *l)
{
    msg[l->len] = 0;
    l->len++;
    refix(l, msg);
}

static void edit_truncated(struct layout *l)
{
    l->len -= 3;
    put16(msg + l->exts_len, l->len - l->exts_len - 2);
    refix(l, msg);
}

static void edit_short_hs(struct layout *l)
{
    l->len = 30;
    refix(l, msg);
}

static void edit_zero_hs(struct layout *l)
{
    l->len = 4;
    refix(l, msg);
}

static void edit_sni_type(struct layout *l)
{
    msg[l->sni_name - 3] = 1;
}

static void edit_sni_list(struct layout *l)
{
    put16(msg + l->sni_name - 5, strlen(HUB) + 2);
}

static void edit_sni_ext_len(struct layout *l)
{
    /* List and name agree, the extension is one byte shorter. */
    put16(msg + l->sni_ext + 2, strlen(HUB) + 4);
}

static void edit_sni_name_len(struct layout *l)
{
    put16(msg + l->sni_name - 2, strlen(HUB) - 1);
}

static void edit_sni_ext_short(struct layout *l)
{
    /* Too short to hold even the list length. */
    put16(msg + l->sni_ext + 2, 1);
}

static void edit_sni_space(struct layout *l)
{
    msg[l->sni_name + 3] = ' ';
}

static void edit_sni_nul(struct layout *l)
{
    msg[l->sni_name + 3] = '\0';
}

static void edit_sni_star(struct layout *l)
{
    msg[l->sni_name] = '*';
}

static void edit_sni_ctl(struct layout *l)
{
    msg[l->sni_name + strlen(HUB) - 1] = '\n';
}

static void edit_sni_high(struct layout *l)
{
    msg[l->sni_name + 1] = 0xc3;
}

static void test_malformed(void **state)
{
    static const struct bad_case cases[] = {
        {"session id 33", "malformed", edit_sid_33},
        {"odd cipher suites", "malformed", edit_cs_odd},
        {"no cipher suites", "malformed", edit_cs_zero},
        {"no compression", "malformed", edit_comp_zero},
        {"extensions overrun", "malformed", edit_exts_long},
        {"extensions short", "malformed", edit_exts_short},
        {"extension overrun", "malformed", edit_ext_overrun},
        {"trailing garbage", "malformed", edit_trailing},
        {"truncated extension", "malformed", edit_truncated},
        {"short message", "malformed", edit_short_hs},
        {"empty message", "malformed", edit_zero_hs},
        {"name_type 1", "bad_sni", edit_sni_type},
        {"list length", "bad_sni", edit_sni_list},
        {"server_name length", "bad_sni", edit_sni_ext_len},
        {"name length", "bad_sni", edit_sni_name_len},
        {"server_name too short", "bad_sni", edit_sni_ext_short},
        {"space", "bad_sni", edit_sni_space},
        {"NUL", "bad_sni", edit_sni_nul},
        {"star", "bad_sni", edit_sni_star},
        {"newline", "bad_sni", edit_sni_ctl},
        {"utf-8", "bad_sni", edit_sni_high},
    };
    struct spec s = {.sni = HUB, .key_share = 40, .padding = 8};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct layout l;
        build(&s, &l);
        cases[i].edit(&l);
        size_t len = frame(msg, l.len, NULL, 0, wire);
        print_message("case: %s\n", cases[i].what);
        expect_err(wire, len, HG_HELLO_ERROR, cases[i].reason);
    }
}

static void test_sni_empty_and_long(void **state)
{
    char name[257];
    struct spec s = {.sni = name, .sni_len = 256};
    struct layout l;
    size_t len;

    memset(name, 'a', 256);
    name[256] = '\0';
    len = build_wire(&s, &l);
    expect_err(wire, len, HG_HELLO_ERROR, "bad_sni");
    s.sni = "";
    s.sni_len = 0;
    len = build_wire(&s, &l);
    expect_err(wire, len, HG_HELLO_ERROR, "bad_sni");
}

static void test_sni_labels(void **state)
{
    static const char *const bad[] = {
        "-bad-.net",
        "bad-.net",
        "-bad.net",
        "a..net",
        ".a.net",
        "a.net..",
        ".",
        "a.-net",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.net",
    };
    static const char *const good[] = {
        "a",
        "a.",
        "x-1.y_2.net",
        "_dmarc.example.net",
        "1.2.3.4",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.net",
    };
    struct layout l;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct spec s = {.sni = bad[i]};
        size_t len = build_wire(&s, &l);
        print_message("bad: %s\n", bad[i]);
        expect_err(wire, len, HG_HELLO_ERROR, "bad_sni");
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct spec s = {.sni = good[i]};
        size_t len = build_wire(&s, &l);
        struct result r = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);
        print_message("good: %s\n", good[i]);
        expect_ok(&r, good[i], len);
    }
}

static void test_duplicate_sni(void **state)
{
    struct spec s = {.sni = HUB, .order = "sgs"};
    struct layout l;
    size_t len = build_wire(&s, &l);

    expect_err(wire, len, HG_HELLO_ERROR, "bad_sni");
}

static void test_bytes_after_hello(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 100};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct result r;

    memcpy(wire + len, "\x17\x03\x03\x00\x05hello", 10);
    r = parse_steps(wire, len + 10, 0, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
    r = parse_steps(wire, len + 10, 1, HG_HELLO_MAX_DEFAULT);
    expect_ok(&r, HUB, len);
}

static void test_record_longer_than_hello(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 100};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct hg_hello h;

    /* The record also carries 3 more bytes after the ClientHello. */
    put16(wire + 3, l.len + 3);
    memcpy(wire + len, "\x00\x00\x00", 3);
    hg_hello_init(&h, HG_HELLO_MAX_DEFAULT);
    assert_int_equal(hg_hello_parse(&h, wire, len), HG_HELLO_AGAIN);
    assert_int_equal(hg_hello_parse(&h, wire, len + 3), HG_HELLO_OK);
    assert_int_equal(h.hello_len, len + 3);
    assert_string_equal(h.sni, HUB);
}

static void test_sticky(void **state)
{
    struct spec s = {.sni = HUB};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct hg_hello h;

    hg_hello_init(&h, HG_HELLO_MAX_DEFAULT);
    assert_int_equal(hg_hello_parse(&h, wire, len), HG_HELLO_OK);
    wire[len] = 0xff;
    assert_int_equal(hg_hello_parse(&h, wire, len + 1), HG_HELLO_OK);
    assert_int_equal(h.hello_len, len);
    hg_hello_init(&h, HG_HELLO_MAX_DEFAULT);
    assert_int_equal(hg_hello_parse(&h, (const uint8_t *)"GE", 2),
                     HG_HELLO_DECLINED);
    assert_int_equal(hg_hello_parse(&h, wire, len), HG_HELLO_DECLINED);
    assert_string_equal(h.reason, "not_tls");
}

/*
 * Every TCP split and every two-record re-framing of one hello, and every
 * TCP split of each re-framing, routes the same as the whole hello.
 */
static void test_every_split(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 38, .padding = 4};
    struct layout l;
    size_t mlen = build(&s, &l);
    size_t len = frame(msg, mlen, NULL, 0, wire);
    struct result whole = parse_steps(wire, len, 0, HG_HELLO_MAX_DEFAULT);

    expect_ok(&whole, HUB, len);
    for (size_t cut = 0; cut <= len; cut++) {
        struct result r = parse_cut(wire, len, cut, HG_HELLO_MAX_DEFAULT);
        expect_same(&whole, &r);
    }
    for (size_t rcut = 1; rcut < mlen; rcut++) {
        size_t cuts[] = {rcut};
        size_t len2 = frame(msg, mlen, cuts, 1, wire2);
        struct result r = parse_steps(wire2, len2, 0, HG_HELLO_MAX_DEFAULT);
        expect_ok(&r, HUB, len2);
        for (size_t cut = 0; cut <= len2; cut++) {
            r = parse_cut(wire2, len2, cut, HG_HELLO_MAX_DEFAULT);
            expect_ok(&r, HUB, len2);
        }
    }
}

/* Every record re-framing of a hello with 3 cuts 7 bytes apart. */
static void test_every_three_records(void **state)
{
    struct spec s = {.sni = HUB, .key_share = 38};
    struct layout l;
    size_t mlen = build(&s, &l);

    for (size_t c = 1; c + 14 < mlen; c++) {
        size_t cuts[] = {c, c + 1, c + 7, c + 14};
        size_t len = frame(msg, mlen, cuts, 4, wire);
        struct result r = parse_steps(wire, len, 1, HG_HELLO_MAX_DEFAULT);
        expect_ok(&r, HUB, len);
    }
}

/* A 64 KiB hello fed one byte per call costs one look at each byte. */
static void test_linear_cost(void **state)
{
    struct spec s = {.sni = HUB, .opaque = 30000, .padding = 35300};
    struct layout l;
    size_t len = build_wire(&s, &l);
    struct hg_hello h;
    enum hg_hello_rc rc = HG_HELLO_AGAIN;
    size_t have;

    assert_true(len > 65400 && len <= HG_HELLO_MAX_DEFAULT);
    hg_hello_init(&h, HG_HELLO_MAX_DEFAULT);
    for (have = 1; have <= len && rc == HG_HELLO_AGAIN; have++) {
        rc = hg_hello_parse(&h, wire, have);
        assert_int_equal(h.examined, have);
    }
    assert_int_equal(rc, HG_HELLO_OK);
    assert_int_equal(have - 1, len);
    assert_int_equal(h.examined, len);
    assert_string_equal(h.sni, HUB);
}

static void test_struct_small(void **state)
{
    assert_true(sizeof(struct hg_hello) <= 384);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openssl_hello),
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_split_1400),
        cmocka_unit_test(test_two_records_cut_in_sni),
        cmocka_unit_test(test_padding_6500),
        cmocka_unit_test(test_sni_past_4097),
        cmocka_unit_test(test_too_big_70k),
        cmocka_unit_test(test_fits_exactly),
        cmocka_unit_test(test_len_over_max),
        cmocka_unit_test(test_cap_before_length),
        cmocka_unit_test(test_header_only),
        cmocka_unit_test(test_no_sni),
        cmocka_unit_test(test_no_extensions),
        cmocka_unit_test(test_empty_extensions),
        cmocka_unit_test(test_case_kept),
        cmocka_unit_test(test_sni_253),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_sslv2),
        cmocka_unit_test(test_record_length),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_not_client_hello),
        cmocka_unit_test(test_alert),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_sni_empty_and_long),
        cmocka_unit_test(test_sni_labels),
        cmocka_unit_test(test_duplicate_sni),
        cmocka_unit_test(test_bytes_after_hello),
        cmocka_unit_test(test_record_longer_than_hello),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_every_three_records),
        cmocka_unit_test(test_linear_cost),
        cmocka_unit_test(test_struct_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
