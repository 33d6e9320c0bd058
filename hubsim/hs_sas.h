/*
 * hs_sas: IoT Hub identities. Shared access signature tokens, device and
 * hub connection strings, and the device keys of an enrollment group.
 *
 * A token is "SharedAccessSignature sr=R&sig=S[&skn=N]&se=E" with
 *   R = the resource URI, URL-encoded ("hub.azure-devices.net/devices/d1")
 *   S = URL-encoded base64 of HMAC-SHA256(key, R + "\n" + E)
 *   E = expiry, seconds since the epoch;  N = the policy name, if any.
 * URL encoding is JavaScript's encodeURIComponent made strict for !'()*,
 * and the fields come in this order, so tokens match the Azure IoT SDK for
 * Node.js byte for byte.
 */
#ifndef HS_SAS_H
#define HS_SAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HS_SAS_KEY_MAX 128 /* bytes of a decoded key */
#define HS_SAS_SIG_LEN 44  /* base64 of an HMAC-SHA256 */

/* A parsed connection string; every string is owned (hs_connstr_free). */
struct hs_connstr {
    char *host_name; /* HostName */
    char *device_id; /* DeviceId, URL-decoded */
    char *module_id; /* ModuleId */
    char *key_name;  /* SharedAccessKeyName */
    char *key;       /* SharedAccessKey, base64 as written */
    char *sas;       /* SharedAccessSignature, a whole token */
    char *gateway;   /* GatewayHostName */
    bool x509;       /* x509=true */
};

enum hs_connstr_kind {
    HS_CONNSTR_DEVICE, /* DeviceId and a key, token or x509 */
    HS_CONNSTR_HUB,    /* SharedAccessKeyName and key, no DeviceId */
};

/*
 * URL-encodes in like encodeURIComponent, with !'()* encoded too (as the
 * Node SDK does; '*' comes out as "%2a"). Returns the encoded length; writes
 * it NUL-terminated only when it is below cap.
 */
size_t hs_sas_urlencode(char *out, size_t cap, const char *in);

/*
 * Signs sr_encoded + "\n" + expiry with key: writes the base64 signature
 * (HS_SAS_SIG_LEN characters and a NUL) into sig.
 */
void hs_sas_sign(const uint8_t *key, size_t key_len, const char *sr_encoded,
                 uint64_t expiry, char sig[HS_SAS_SIG_LEN + 1]);

/*
 * Writes the token for resource (not yet encoded, e.g. "hub/devices/d1"),
 * signed with key, with skn=policy when policy is not NULL. Returns the
 * token's length; writes it NUL-terminated only when it is below cap.
 */
size_t hs_sas_token(char *out, size_t cap, const char *resource,
                    const uint8_t *key, size_t key_len, const char *policy,
                    uint64_t expiry);

/*
 * The device key of device_id in an enrollment group: HMAC-SHA256 with the
 * group key over the id. Writes 32 bytes.
 */
void hs_sas_derive(const uint8_t *group_key, size_t key_len,
                   const char *device_id, uint8_t device_key[32]);

/*
 * Decodes a base64 key into key (HS_SAS_KEY_MAX bytes). Returns its length,
 * or -1 when it is not base64, empty or too long.
 */
long hs_sas_key_decode(const char *text, uint8_t *key);

/*
 * Parses "Key=value;Key=value". Keys are matched without regard to case,
 * values run to the next ';' and may hold '='; empty parts are skipped.
 * Returns 0, or -1 with a static *reason (unknown or repeated key, missing
 * HostName, key and token both given, ...). On error nothing is kept.
 */
int hs_connstr_parse(const char *text, struct hs_connstr *cs,
                     const char **reason);

/* What a parsed string identifies. */
enum hs_connstr_kind hs_connstr_kind(const struct hs_connstr *cs);

void hs_connstr_free(struct hs_connstr *cs);

#endif
