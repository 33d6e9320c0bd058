#include "hs_sas.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hs_base64.h"

/* The keys a connection string may hold, and where each one goes. */
struct hs__cs_key {
    const char *name;
    size_t offset; /* of the char * in struct hs_connstr; SIZE_MAX: x509 */
};

static bool hs__unreserved(unsigned char c);
static char *hs__url_decode(const char *s, size_t len);
static const char *hs__cs_part(struct hs_connstr *cs, const char *part,
                               size_t len);
static const char *hs__cs_store(struct hs_connstr *cs,
                                const struct hs__cs_key *k, const char *v,
                                size_t vlen);
static const char *hs__cs_check(const struct hs_connstr *cs);

static const struct hs__cs_key hs__cs_keys[] = {
    {"HostName", offsetof(struct hs_connstr, host_name)},
    {"DeviceId", offsetof(struct hs_connstr, device_id)},
    {"ModuleId", offsetof(struct hs_connstr, module_id)},
    {"SharedAccessKeyName", offsetof(struct hs_connstr, key_name)},
    {"SharedAccessKey", offsetof(struct hs_connstr, key)},
    {"SharedAccessSignature", offsetof(struct hs_connstr, sas)},
    {"GatewayHostName", offsetof(struct hs_connstr, gateway)},
    {"x509", SIZE_MAX},
};

/* encodeURIComponent leaves these alone; the strict form drops !'()*. */
static bool hs__unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

size_t hs_sas_urlencode(char *out, size_t cap, const char *in)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char enc[3];
        size_t k = 1;
        enc[0] = (char)*p;
        if (!hs__unreserved(*p)) {
            enc[0] = '%';
            enc[1] = hex[*p >> 4];
            /* The SDK's strict encoder writes '*' with lower-case hex. */
            enc[2] = *p == '*' ? 'a' : hex[*p & 15];
            k = 3;
        }
        if (n + k < cap)
            memcpy(out + n, enc, k);
        n += k;
    }
    if (n < cap)
        out[n] = '\0';
    return n;
}

void hs_sas_sign(const uint8_t *key, size_t key_len, const char *sr_encoded,
                 uint64_t expiry, char sig[HS_SAS_SIG_LEN + 1])
{
    char msg[2048];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    int n = snprintf(msg, sizeof(msg), "%s\n%" PRIu64, sr_encoded, expiry);
    if (n < 0 || (size_t)n >= sizeof(msg))
        n = 0; /* resources are far shorter; sign nothing rather than part */
    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, (size_t)n,
         mac, &mac_len);
    hs_base64_encode(mac, 32, sig);
}

size_t hs_sas_token(char *out, size_t cap, const char *resource,
                    const uint8_t *key, size_t key_len, const char *policy,
                    uint64_t expiry)
{
    char sr[1024], sig[HS_SAS_SIG_LEN + 1], sig_enc[3 * HS_SAS_SIG_LEN + 1];
    char skn[512] = "";
    if (hs_sas_urlencode(sr, sizeof(sr), resource) >= sizeof(sr))
        return SIZE_MAX;
    hs_sas_sign(key, key_len, sr, expiry, sig);
    hs_sas_urlencode(sig_enc, sizeof(sig_enc), sig);
    if (policy != NULL) {
        memcpy(skn, "&skn=", 5);
        if (hs_sas_urlencode(skn + 5, sizeof(skn) - 5, policy) >=
            sizeof(skn) - 5)
            return SIZE_MAX;
    }
    int n =
        snprintf(out, cap, "SharedAccessSignature sr=%s&sig=%s%s&se=%" PRIu64,
                 sr, sig_enc, skn, expiry);
    return n < 0 ? SIZE_MAX : (size_t)n;
}

void hs_sas_derive(const uint8_t *group_key, size_t key_len,
                   const char *device_id, uint8_t device_key[32])
{
    unsigned int len = 0;
    HMAC(EVP_sha256(), group_key, (int)key_len,
         (const unsigned char *)device_id, strlen(device_id), device_key, &len);
}

long hs_sas_key_decode(const char *text, uint8_t *key)
{
    long n = hs_base64_decode(text, key, HS_SAS_KEY_MAX);
    return n > 0 ? n : -1;
}

/* ------------------------------------------------------------------ */
/* Connection strings                                                  */
/* ------------------------------------------------------------------ */

int hs_connstr_parse(const char *text, struct hs_connstr *cs,
                     const char **reason)
{
    memset(cs, 0, sizeof(*cs));
    const char *why = NULL;
    const char *p = text;
    while (why == NULL && *p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0)
            why = hs__cs_part(cs, p, len);
        p += len + (end ? 1 : 0);
    }
    if (why == NULL)
        why = hs__cs_check(cs);
    if (why != NULL) {
        hs_connstr_free(cs);
        *reason = why;
        return -1;
    }
    return 0;
}

/* One "Key=value" part; spaces around the key are ignored. */
static const char *hs__cs_part(struct hs_connstr *cs, const char *part,
                               size_t len)
{
    const char *eq = memchr(part, '=', len);
    if (eq == NULL)
        return "a part without '='";
    const char *v = eq + 1;
    size_t vlen = len - (size_t)(v - part);
    const char *key = part;
    size_t klen = (size_t)(eq - part);
    while (klen && (key[0] == ' ' || key[0] == '\t'))
        key++, klen--;
    while (klen && (key[klen - 1] == ' ' || key[klen - 1] == '\t'))
        klen--;
    for (size_t i = 0; i < sizeof(hs__cs_keys) / sizeof(hs__cs_keys[0]); i++) {
        const struct hs__cs_key *k = &hs__cs_keys[i];
        if (strlen(k->name) == klen && strncasecmp(key, k->name, klen) == 0)
            return hs__cs_store(cs, k, v, vlen);
    }
    return "unknown key";
}

/* Stores one value; each key may appear once. */
static const char *hs__cs_store(struct hs_connstr *cs,
                                const struct hs__cs_key *k, const char *v,
                                size_t vlen)
{
    if (vlen == 0)
        return "empty value";
    if (k->offset == SIZE_MAX) {
        if (vlen == 4 && strncasecmp(v, "true", 4) == 0)
            cs->x509 = true;
        else if (!(vlen == 5 && strncasecmp(v, "false", 5) == 0))
            return "x509 is neither true nor false";
        return NULL;
    }
    char **slot = (char **)((char *)cs + k->offset);
    if (*slot != NULL)
        return "repeated key";
    bool device = k->offset == offsetof(struct hs_connstr, device_id);
    *slot = device ? hs__url_decode(v, vlen) : strndup(v, vlen);
    if (*slot == NULL)
        return device ? "DeviceId has a bad %-escape" : "out of memory";
    return NULL;
}

/* The combinations that make sense, as the device SDKs accept them. */
static const char *hs__cs_check(const struct hs_connstr *cs)
{
    uint8_t key[HS_SAS_KEY_MAX];
    if (cs->host_name == NULL)
        return "no HostName";
    if (cs->key != NULL && cs->sas != NULL)
        return "both SharedAccessKey and SharedAccessSignature";
    if (cs->key != NULL && hs_sas_key_decode(cs->key, key) < 0)
        return "SharedAccessKey is not base64";
    if (cs->key_name != NULL && cs->key == NULL)
        return "SharedAccessKeyName without SharedAccessKey";
    if (cs->device_id == NULL) {
        if (cs->key_name == NULL)
            return "neither DeviceId nor SharedAccessKeyName";
        if (cs->module_id != NULL)
            return "ModuleId without DeviceId";
        return NULL;
    }
    if (cs->key == NULL && cs->sas == NULL && !cs->x509)
        return "no SharedAccessKey, SharedAccessSignature or x509=true";
    if (cs->x509 && (cs->key != NULL || cs->sas != NULL))
        return "x509=true with a key or token";
    return NULL;
}

/* %XX-decodes s[0..len) into a new string; NULL on a bad escape or %00. */
static char *hs__url_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
            !isxdigit((unsigned char)s[i + 2])) {
            free(out);
            return NULL;
        }
        char hex[3] = {s[i + 1], s[i + 2], 0};
        out[n] = (char)strtoul(hex, NULL, 16);
        if (out[n++] == 0) {
            free(out);
            return NULL;
        }
        i += 2;
    }
    out[n] = '\0';
    return out;
}

enum hs_connstr_kind hs_connstr_kind(const struct hs_connstr *cs)
{
    return cs->device_id != NULL ? HS_CONNSTR_DEVICE : HS_CONNSTR_HUB;
}

void hs_connstr_free(struct hs_connstr *cs)
{
    free(cs->host_name);
    free(cs->device_id);
    free(cs->module_id);
    free(cs->key_name);
    free(cs->key);
    free(cs->sas);
    free(cs->gateway);
    memset(cs, 0, sizeof(*cs));
}
