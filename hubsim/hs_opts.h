/*
 * hs_opts: hubsim's settings, from command-line flags and from the
 * environment variables of Microsoft's IoT Telemetry Simulator
 * (IotHubConnectionString, DeviceCount, DevicePrefix, ...), with that
 * tool's defaults. A flag always wins over the environment. Environment
 * names match without regard to case, as .NET's configuration does; a name
 * that looks like a misspelt setting gets a warning with a suggestion, and
 * a setting hubsim does not implement yet is named and ignored.
 */
#ifndef HS_OPTS_H
#define HS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hs_payload.h"
#include "hs_sas.h"
#include "hs_template.h"

#define HS_API_VERSION   "2021-04-12"
#define HS_PAYLOAD_MAX   (256 * 1024) /* IoT Hub's largest message */
#define HS_DEVICE_ID_MAX 128
#define HS_MAX_THREADS   64

/* One device's own interval list (the File's "Intervals" by device id). */
struct hs_intervals {
    uint32_t *ms; /* NULL: the run's list */
    size_t n;
};

enum hs_protocol {
    HS_PROTO_MQTT,    /* MQTT 3.1.1 over TLS, 8883 */
    HS_PROTO_MQTT_WS, /* MQTT over TLS WebSockets, 443 */
    HS_PROTO_AMQP,    /* AMQP 1.0 over TLS, 5671, devices pooled */
    HS_PROTO_AMQP_WS, /* AMQP over TLS WebSockets, 443 */
};

/* How an AMQP connection and its devices authenticate. */
enum hs_amqp_auth {
    HS_AMQP_CBS,       /* SASL ANONYMOUS, then a SAS token per device */
    HS_AMQP_PLAIN,     /* SASL PLAIN with --amqp-user/--amqp-password */
    HS_AMQP_ANONYMOUS, /* SASL ANONYMOUS and nothing more */
};

enum hs_auth {
    HS_AUTH_NONE,       /* CONNECT without a password */
    HS_AUTH_DEVICE_KEY, /* one key signs every device's token */
    HS_AUTH_GROUP_KEY,  /* each device's key is derived from a group key */
    HS_AUTH_POLICY,     /* a hub policy's key, skn in the token */
    HS_AUTH_TOKEN,      /* a ready-made token, for every device */
};

struct hs_config {
    /* Where to and how. */
    char *hub; /* SNI, certificate name, user name, token resource */
    enum hs_protocol protocol;
    bool have_connect_to;
    struct sockaddr_storage connect_to;
    socklen_t connect_to_len;
    uint16_t port; /* of connect_to, or the protocol's default */
    char *cafile;
    char *ws_path;
    struct sockaddr_storage *binds; /* source addresses, used in turn */
    size_t nbinds;
    uint32_t devices_per_conn; /* AMQP: devices sharing one connection */
    enum hs_amqp_auth amqp_auth;
    char *amqp_user;
    char *amqp_password;
    char *amqp_address; /* target; "{deviceId}" is replaced */

    /* Who. */
    enum hs_auth auth;
    uint8_t key[HS_SAS_KEY_MAX];
    size_t key_len;
    char *policy; /* skn, HS_AUTH_POLICY */
    char *token;  /* HS_AUTH_TOKEN */
    uint64_t sas_ttl_s;
    uint64_t sas_expiry; /* fixed expiry (seconds since 1970); 0: now + ttl */
    char **device_ids;
    uint32_t ndevices;
    char *cert;     /* X.509: one certificate (PEM) for every device */
    char *cert_key; /* its private key */
    char *cert_dir; /* or DIR/{deviceId}.pem and .key, per device */

    /* How much. */
    uint64_t messages; /* per device; 0: no limit */
    uint64_t duration_ms;
    uint32_t *intervals; /* ms, used in turn */
    size_t nintervals;
    struct hs_intervals *dev_intervals; /* per device, or NULL for none */
    uint8_t qos;
    struct hs_template template;
    size_t payload_size;       /* > 0: that many zero bytes instead */
    char *properties;          /* property bag appended to the topic */
    struct hs_payload payload; /* what each message carries, and its bag */
    double ramp;               /* connections started per second; 0: at once */
    uint32_t inflight;         /* unacknowledged QoS 1 messages per device */
    uint32_t keepalive_s;
    uint64_t connect_timeout_ms;
    uint64_t ack_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t backoff_base_ms;
    uint64_t backoff_max_ms;
    uint32_t max_attempts; /* consecutive failures before giving up; 0: never */
    bool clean_session;
    bool c2d;
    bool resend;        /* re-send QoS 1 messages of a dropped connection */
    uint64_t *storm_at; /* ms into the run, ascending */
    size_t nstorms;
    unsigned threads;

    /* Output and verdict. */
    char *report_json;
    char *report_html;
    bool have_metrics_listen; /* serve /metrics on metrics_listen */
    struct sockaddr_storage metrics_listen;
    socklen_t metrics_listen_len;
    uint64_t metrics_linger_ms; /* keep serving after the end */
    bool quiet;
    bool print_token;
    double max_p99_ms;  /* < 0: no threshold */
    int64_t max_errors; /* < 0: no threshold */
    double min_rate;    /* < 0: no threshold */
};

enum hs_opts_rc {
    HS_OPTS_RUN,   /* cfg is ready */
    HS_OPTS_EXIT,  /* help or version printed: exit 0 */
    HS_OPTS_ERROR, /* a message was printed: exit 2 */
};

/*
 * Fills cfg from envp (NULL-terminated "NAME=value" strings) and argv.
 * Errors and warnings go to stderr. On HS_OPTS_RUN the caller owns cfg and
 * frees it with hs_config_free(); otherwise nothing is left to free.
 */
enum hs_opts_rc hs_opts_parse(struct hs_config *cfg, int argc, char **argv,
                              char **envp);

void hs_config_free(struct hs_config *cfg);

/* Device's (place in the fleet) interval before its message k + 1, ms. */
uint32_t hs_config_interval(const struct hs_config *cfg, uint32_t device,
                            uint64_t k);

/* The protocol's name ("mqtt", "mqtt-ws"). */
const char *hs_protocol_name(enum hs_protocol p);

/*
 * Edit distance between a and b (optimal string alignment: insertions,
 * deletions, substitutions and swaps of neighbours), ignoring case.
 */
unsigned hs_opts_distance(const char *a, const char *b);

/*
 * The candidate closest to word, or NULL when none is within a distance a
 * person would call a typo (1 for short names, 2 from 6 characters, 3 from
 * 12), ignoring case.
 */
const char *hs_opts_suggest(const char *word, const char *const *candidates,
                            size_t n);

#endif
