#include "hs_opts.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hg_log.h"
#include "hg_units.h"

#define HS_SAS_TTL_MIN_MS 10000 /* shortest token lifetime */

/* Every setting, by flag and by environment name. */
enum hs__id {
    O_HUB,
    O_CONNSTR,
    O_DEVICE_KEY,
    O_GROUP_KEY,
    O_POLICY_NAME,
    O_POLICY_KEY,
    O_SAS_TOKEN,
    O_SAS_TTL,
    O_SAS_EXPIRY,
    O_CERT,
    O_KEY,
    O_CERT_DIR,
    O_PROTOCOL,
    O_CONNECT_TO,
    O_CAFILE,
    O_WS_PATH,
    O_BIND,
    O_DEVS_PER_CONN,
    O_AMQP_AUTH,
    O_AMQP_USER,
    O_AMQP_PASSWORD,
    O_AMQP_ADDRESS,
    O_DEVICES,
    O_PREFIX,
    O_INDEX,
    O_DEVICE_LIST,
    O_MESSAGES,
    O_INTERVAL,
    O_INTERVALS,
    O_DURATION,
    O_QOS,
    O_TEMPLATE,
    O_PAYLOAD_SIZE,
    O_PROPERTIES,
    O_VARIABLES,
    O_HEADER,
    O_PAYLOAD_DIST,
    O_PAYLOADS,
    O_FILE,
    O_RAMP,
    O_INFLIGHT,
    O_KEEPALIVE,
    O_CONNECT_TIMEOUT,
    O_ACK_TIMEOUT,
    O_DRAIN_TIMEOUT,
    O_BACKOFF_BASE,
    O_BACKOFF_MAX,
    O_MAX_ATTEMPTS,
    O_CLEAN_SESSION,
    O_C2D,
    O_RESEND,
    O_STORM_AT,
    O_THREADS,
    O_REPORT_JSON,
    O_REPORT_HTML,
    O_METRICS_LISTEN,
    O_METRICS_LINGER,
    O_QUIET,
    O_LOG_LEVEL,
    O_MAX_P99,
    O_MAX_ERRORS,
    O_MIN_RATE,
    O_PRINT_TOKEN,
    O_HELP,
    O_VERSION,
    O_N,
};

struct hs__opt {
    const char *flag; /* without "--"; NULL: environment only */
    const char *env;  /* NULL: flag only */
    bool has_arg;
};

/*
 * Where each setting's text came from: a flag, the File (which wins over
 * the environment, as in the simulator) or the environment. A File value
 * that is an array or object is in node instead of value.
 */
struct hs__settings {
    const char *value[O_N];
    bool from_flag[O_N];
    bool from_file[O_N];
    const struct hs_json *node[O_N];
    const char *env_entry[O_N];          /* the "NAME=value" it came from */
    const char *env_empty[O_N];          /* a "NAME=" seen, to warn about */
    const struct hs_json *dev_intervals; /* the File's Intervals object */
    char **envp;
    struct hs_json *file; /* the File's tree, freed at the end */
    char *file_text;
};

static const struct hs__opt hs__opts[O_N] = {
    [O_HUB] = {"hub", NULL, true},
    [O_CONNSTR] = {"connection-string", "IotHubConnectionString", true},
    [O_DEVICE_KEY] = {"device-key", NULL, true},
    [O_GROUP_KEY] = {"group-key", NULL, true},
    [O_POLICY_NAME] = {"policy-name", NULL, true},
    [O_POLICY_KEY] = {"policy-key", NULL, true},
    [O_SAS_TOKEN] = {"sas-token", NULL, true},
    [O_SAS_TTL] = {"sas-ttl", NULL, true},
    [O_SAS_EXPIRY] = {"sas-expiry", NULL, true},
    [O_CERT] = {"cert", NULL, true},
    [O_KEY] = {"key", NULL, true},
    [O_CERT_DIR] = {"cert-dir", NULL, true},
    [O_PROTOCOL] = {"protocol", NULL, true},
    [O_CONNECT_TO] = {"connect-to", NULL, true},
    [O_CAFILE] = {"cafile", NULL, true},
    [O_WS_PATH] = {"ws-path", NULL, true},
    [O_BIND] = {"bind", NULL, true},
    [O_DEVS_PER_CONN] = {"devices-per-connection", NULL, true},
    [O_AMQP_AUTH] = {"amqp-auth", NULL, true},
    [O_AMQP_USER] = {"amqp-user", NULL, true},
    [O_AMQP_PASSWORD] = {"amqp-password", NULL, true},
    [O_AMQP_ADDRESS] = {"amqp-address", NULL, true},
    [O_DEVICES] = {"devices", "DeviceCount", true},
    [O_PREFIX] = {"prefix", "DevicePrefix", true},
    [O_INDEX] = {"index", "DeviceIndex", true},
    [O_DEVICE_LIST] = {"device-list", "DeviceList", true},
    [O_MESSAGES] = {"messages", "MessageCount", true},
    [O_INTERVAL] = {"interval", "Interval", true},
    [O_INTERVALS] = {NULL, "Intervals", true},
    [O_DURATION] = {"duration", NULL, true},
    [O_QOS] = {"qos", NULL, true},
    [O_TEMPLATE] = {"template", "Template", true},
    [O_PAYLOAD_SIZE] = {"payload-size", NULL, true},
    [O_PROPERTIES] = {"properties", NULL, true},
    [O_VARIABLES] = {"variables", "Variables", true},
    [O_HEADER] = {"header", "Header", true},
    [O_PAYLOAD_DIST] = {"payload-distribution", "PayloadDistribution", true},
    [O_PAYLOADS] = {NULL, "Payloads", true},
    [O_FILE] = {"file", "File", true},
    [O_RAMP] = {"ramp", NULL, true},
    [O_INFLIGHT] = {"inflight", NULL, true},
    [O_KEEPALIVE] = {"keepalive", NULL, true},
    [O_CONNECT_TIMEOUT] = {"connect-timeout", NULL, true},
    [O_ACK_TIMEOUT] = {"ack-timeout", NULL, true},
    [O_DRAIN_TIMEOUT] = {"drain-timeout", NULL, true},
    [O_BACKOFF_BASE] = {"backoff-base", NULL, true},
    [O_BACKOFF_MAX] = {"backoff-max", NULL, true},
    [O_MAX_ATTEMPTS] = {"max-attempts", NULL, true},
    [O_CLEAN_SESSION] = {"clean-session", NULL, true},
    [O_C2D] = {"c2d", NULL, false},
    [O_RESEND] = {"resend-unacked", NULL, true},
    [O_STORM_AT] = {"storm-at", NULL, true},
    [O_THREADS] = {"threads", NULL, true},
    [O_REPORT_JSON] = {"report-json", NULL, true},
    [O_REPORT_HTML] = {"report-html", NULL, true},
    [O_METRICS_LISTEN] = {"metrics-listen", NULL, true},
    [O_METRICS_LINGER] = {"metrics-linger", NULL, true},
    [O_QUIET] = {"quiet", NULL, false},
    [O_LOG_LEVEL] = {"log-level", NULL, true},
    [O_MAX_P99] = {"max-p99", NULL, true},
    [O_MAX_ERRORS] = {"max-errors", NULL, true},
    [O_MIN_RATE] = {"min-rate", NULL, true},
    [O_PRINT_TOKEN] = {"print-token", NULL, false},
    [O_HELP] = {"help", NULL, false},
    [O_VERSION] = {"version", NULL, false},
};

/* The simulator's settings that hubsim reads but does not act on yet. */
static const char *const hs__env_later[] = {
    "DuplicateEvery",
    "FixPayload",
    "FixPayloadSize",
    "PartitionKey",
    "EventHubConnectionString",
    "KafkaConnectionProperties",
    "KafkaTopic",
};

/* Environment names starting so are taken for simulator settings. */
static const char *const hs__env_stems[] = {
    "device", "message", "interval", "iothub", "payload", "template",
};

static const char hs__usage[] =
    "usage: hubsim [options]\n"
    "\n"
    "Simulates IoT Hub devices: MQTT (a connection each) or AMQP (many on\n"
    "a connection), over TLS or TLS WebSockets, with IoT Hub's device\n"
    "authentication; measures and reports.\n"
    "Settings also come from the IoT Telemetry Simulator's environment\n"
    "variables (in brackets); a flag wins over the environment.\n"
    "\n"
    "Hub and transport:\n"
    "  --hub NAME               hub host name: SNI, certificate, user name\n"
    "  --connection-string CS   hub policy or device connection string\n"
    "                           [IotHubConnectionString]\n"
    "  --protocol P             mqtt (8883, default), mqtt-ws (443), amqp\n"
    "                           (5671) or amqp-ws (443)\n"
    "  --connect-to IP:PORT     connect there; the hub name is still sent\n"
    "                           and checked (like a hosts file entry)\n"
    "  --cafile FILE            CA certificates to trust (default: system)\n"
    "  --ws-path PATH           WebSocket path (/$iothub/websocket)\n"
    "  --bind IP[,IP...]        local source addresses, used in turn\n"
    "\n"
    "AMQP:\n"
    "  --devices-per-connection N  devices sharing one connection (995)\n"
    "  --amqp-auth A            cbs (IoT Hub claims; default with a\n"
    "                           credential), plain or anonymous (default\n"
    "                           without one)\n"
    "  --amqp-user U, --amqp-password P   SASL PLAIN credentials\n"
    "  --amqp-address ADDR      target; {deviceId} is replaced\n"
    "                           (/devices/{deviceId}/messages/events)\n"
    "\n"
    "Credentials (one of; default: the connection string's):\n"
    "  --device-key KEY         base64 key shared by every device\n"
    "  --group-key KEY          enrollment group key: each device's key is\n"
    "                           HMAC-SHA256(KEY, device id)\n"
    "  --policy-key KEY         hub policy key (with --policy-name, default\n"
    "                           \"device\"); tokens carry skn\n"
    "  --sas-token TOKEN        a ready-made token for every device\n"
    "  --sas-ttl DURATION       token lifetime (1h, at least 10s); devices\n"
    "                           reconnect with a fresh token at 75-85 % of it\n"
    "  --sas-expiry SECONDS     fixed expiry, seconds since 1970\n"
    "  --print-token            print each device's token and exit\n"
    "  --cert FILE --key FILE   X.509 client certificate (PEM) for every\n"
    "                           device, instead of a token\n"
    "  --cert-dir DIR           per device: DIR/{deviceId}.pem and .key\n"
    "\n"
    "Devices:\n"
    "  --devices N              how many [DeviceCount] (1)\n"
    "  --prefix P               id prefix [DevicePrefix] (sim)\n"
    "  --index N                first index [DeviceIndex] (1): ids are\n"
    "                           prefix + six digits, sim000001\n"
    "  --device-list A,B;C      explicit ids [DeviceList]\n"
    "\n"
    "Load:\n"
    "  --messages N             per device, 0 = no limit [MessageCount] (100)\n"
    "  --interval MS[,MS...]    between messages, cycled [Interval,\n"
    "                           Intervals] (1000)\n"
    "  --duration DURATION      stop sending after this long (30s, 5m;\n"
    "                           0 = no limit, the default)\n"
    "  --qos 0|1                (1)\n"
    "  --template TEXT          payload with $.DeviceId, $.Time, $.Counter,\n"
    "                           ... [Template]\n"
    "  --payload-size BYTES     fixed zero-filled payload instead\n"
    "  --properties BAG         property bag after the topic (a=1&b=2)\n"
    "  --variables JSON         custom variables for templates [Variables]\n"
    "  --header TEMPLATE        JSON object of message properties, sent\n"
    "                           in the topic's property bag [Header]\n"
    "  --payload-distribution S mix of payloads by percent, e.g.\n"
    "                           \"fixSize(10,12) template(90,default)\"\n"
    "                           [PayloadDistribution]\n"
    "  --file PATH              JSON file of settings, with Payloads and\n"
    "                           per-device Intervals [File]\n"
    "  --ramp N                 connections started per second, 0 = all at\n"
    "                           once (100)\n"
    "  --inflight N             unacknowledged QoS 1 messages per device (16)\n"
    "  --keepalive DURATION     MQTT keep-alive (60s)\n"
    "  --connect-timeout D      TCP + TLS + CONNACK (30s)\n"
    "  --ack-timeout D          PUBACK, SUBACK, PINGRESP (30s)\n"
    "  --drain-timeout D        wait for the last PUBACKs at the end (10s)\n"
    "  --backoff-base D         reconnect back-off base (1s), doubling per\n"
    "  --backoff-max D          failure up to this cap (60s), full jitter\n"
    "  --max-attempts N         give a device up after N failures in a row\n"
    "                           (0 = never)\n"
    "  --clean-session 0|1      (1)\n"
    "  --c2d                    subscribe to cloud-to-device messages, count\n"
    "  --resend-unacked 0|1     re-send QoS 1 messages in flight on a\n"
    "                           dropped connection after reconnecting (1)\n"
    "  --storm-at D[,D...]      at these times into the run every device\n"
    "                           drops its connection at once and reconnects\n"
    "  --threads N              event loops (one per core)\n"
    "\n"
    "Output and exit status:\n"
    "  --report-json FILE       write the final report as JSON\n"
    "  --report-html FILE       write it as one self-contained HTML page\n"
    "                           with charts over time\n"
    "  --metrics-listen IP:PORT serve /metrics (Prometheus) while running\n"
    "  --metrics-linger D       keep serving the final figures this long\n"
    "                           after the run, or until a signal (0)\n"
    "  --quiet                  no live line\n"
    "  --log-level L            error, warn, info (default), debug\n"
    "  --max-p99 MS             fail when PUBACK p99 is above MS\n"
    "  --max-errors N           fail on more than N errors\n"
    "  --min-rate N             fail below N acknowledged messages/s\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 done and every threshold met, 1 a threshold failed,\n"
    "2 bad settings, 3 could not start.\n";

static enum hs_opts_rc hs__read_env(struct hs__settings *s, char **envp);
static void hs__env_entry(struct hs__settings *s, const char *entry);
static void hs__env_warn(const struct hs__settings *s);
static bool hs__not_ours(const struct hs__settings *s, const char *name,
                         const char *where);
static void hs__env_unknown(const char *name, const char *where);
static int hs__file_read(struct hs__settings *s);
static int hs__file_member(struct hs__settings *s, const char *key,
                           const struct hs_json *v);
static int hs__fin_payload(struct hs_config *cfg, const struct hs__settings *s);
static int hs__variables(struct hs_config *cfg, const struct hs__settings *s);
static int hs__payloads(struct hs_config *cfg, const struct hs__settings *s,
                        const char *tpl);
static int hs__payload_item(struct hs_config *cfg, const struct hs_json *it,
                            char *why, size_t cap);
static char *hs__flatten(const struct hs_json *v);
static const char *hs__lookup(void *arg, const char *name);
static int hs__dev_intervals(struct hs_config *cfg,
                             const struct hs__settings *s);
static int hs__interval_list(const struct hs_json *v, struct hs_intervals *iv);
static bool hs__list_whole(const char *p);
static enum hs_opts_rc hs__read_argv(struct hs__settings *s, int argc,
                                     char **argv);
static int hs__find_flag(const char *name, size_t len);
static void hs__flag_suggest(const char *name, size_t len);
static int hs__finish(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_identity(struct hs_config *cfg,
                            const struct hs__settings *s);
static int hs__fin_connstr(struct hs_config *cfg, const struct hs__settings *s,
                           bool explicit_ids, bool have_cred);
static int hs__fin_credentials(struct hs_config *cfg,
                               const struct hs__settings *s);
static int hs__fin_x509(struct hs_config *cfg, const struct hs__settings *s);
static int hs__storms(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_transport(struct hs_config *cfg,
                             const struct hs__settings *s);
static int hs__fin_devices(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_amqp(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_load(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_timing(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_output(struct hs_config *cfg, const struct hs__settings *s);
static int hs__fin_metrics(struct hs_config *cfg, const struct hs__settings *s);
static int hs__bad(const struct hs__settings *s, enum hs__id id,
                   const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *hs__name(const struct hs__settings *s, enum hs__id id);
static int hs__uint(const struct hs__settings *s, enum hs__id id, uint64_t min,
                    uint64_t max, uint64_t *out);
static int hs__number(const struct hs__settings *s, enum hs__id id,
                      double *out);
static int hs__duration(const struct hs__settings *s, enum hs__id id,
                        uint64_t unit_ms, uint64_t *ms);
static int hs__parse_duration(const char *text, uint64_t unit_ms, uint64_t *ms,
                              const char **why);
static int hs__intervals(struct hs_config *cfg, const struct hs__settings *s,
                         enum hs__id id);
static int hs__key(const struct hs__settings *s, enum hs__id id,
                   struct hs_config *cfg);
static int hs__ids_from_list(struct hs_config *cfg,
                             const struct hs__settings *s);
static int hs__ids_generated(struct hs_config *cfg,
                             const struct hs__settings *s);
static const char *hs__device_id_check(const char *id);
static int hs__ids_unique(const struct hs_config *cfg,
                          const struct hs__settings *s);
static int hs__strcmp_p(const void *a, const void *b);
static const char *hs__add_id(struct hs_config *cfg, const char *id,
                              size_t len);
static int hs__binds(struct hs_config *cfg, const struct hs__settings *s);
static int hs__ip(const char *text, uint16_t port, struct sockaddr_storage *ss,
                  socklen_t *len);

/* ------------------------------------------------------------------ */
/* Entry points                                                        */
/* ------------------------------------------------------------------ */

enum hs_opts_rc hs_opts_parse(struct hs_config *cfg, int argc, char **argv,
                              char **envp)
{
    struct hs__settings s = {.envp = envp};
    memset(cfg, 0, sizeof(*cfg));
    hs_payload_init(&cfg->payload);
    if (hs__read_env(&s, envp) != HS_OPTS_RUN)
        return HS_OPTS_ERROR;
    enum hs_opts_rc rc = hs__read_argv(&s, argc, argv);
    if (rc == HS_OPTS_RUN && s.value[O_HELP] != NULL) {
        fputs(hs__usage, stdout);
        rc = HS_OPTS_EXIT;
    } else if (rc == HS_OPTS_RUN && s.value[O_VERSION] != NULL) {
        printf("hubsim %s\n", HG_VERSION);
        rc = HS_OPTS_EXIT;
    }
    if (rc == HS_OPTS_RUN && s.value[O_FILE] != NULL && hs__file_read(&s) < 0)
        rc = HS_OPTS_ERROR;
    if (rc == HS_OPTS_RUN) {
        hs__env_warn(&s);
        if (hs__finish(cfg, &s) < 0)
            rc = HS_OPTS_ERROR;
    }
    hs_json_free(s.file);
    free(s.file_text);
    if (rc != HS_OPTS_RUN)
        hs_config_free(cfg);
    return rc;
}

void hs_config_free(struct hs_config *cfg)
{
    free(cfg->hub);
    free(cfg->cafile);
    free(cfg->ws_path);
    free(cfg->amqp_user);
    free(cfg->amqp_password);
    free(cfg->amqp_address);
    free(cfg->binds);
    free(cfg->policy);
    free(cfg->token);
    free(cfg->cert);
    free(cfg->cert_key);
    free(cfg->cert_dir);
    free(cfg->storm_at);
    for (uint32_t i = 0; i < cfg->ndevices; i++)
        free(cfg->device_ids[i]);
    free(cfg->device_ids);
    free(cfg->intervals);
    for (uint32_t i = 0; cfg->dev_intervals && i < cfg->ndevices; i++)
        free(cfg->dev_intervals[i].ms);
    free(cfg->dev_intervals);
    hs_payload_free(&cfg->payload);
    hs_template_free(&cfg->template);
    free(cfg->properties);
    free(cfg->report_json);
    free(cfg->report_html);
    memset(cfg, 0, sizeof(*cfg));
}

uint32_t hs_config_interval(const struct hs_config *cfg, uint32_t device,
                            uint64_t k)
{
    if (cfg->dev_intervals != NULL && device < cfg->ndevices &&
        cfg->dev_intervals[device].n > 0) {
        const struct hs_intervals *iv = &cfg->dev_intervals[device];
        return iv->ms[k % iv->n];
    }
    return cfg->intervals[k % cfg->nintervals];
}

const char *hs_protocol_name(enum hs_protocol p)
{
    static const char *const names[] = {"mqtt", "mqtt-ws", "amqp", "amqp-ws"};
    return names[p];
}

unsigned hs_opts_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64)
        return 99;
    unsigned d[65][65];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            unsigned best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

const char *hs_opts_suggest(const char *word, const char *const *candidates,
                            size_t n)
{
    const char *best = NULL;
    unsigned best_d = 99;
    for (size_t i = 0; i < n; i++) {
        if (candidates[i] == NULL)
            continue;
        unsigned d = hs_opts_distance(word, candidates[i]);
        size_t len = strlen(candidates[i]);
        unsigned limit = len >= 12 ? 3 : len >= 6 ? 2 : 1;
        if (d <= limit && d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

/* ------------------------------------------------------------------ */
/* Reading the environment and the command line                        */
/* ------------------------------------------------------------------ */

static enum hs_opts_rc hs__read_env(struct hs__settings *s, char **envp)
{
    for (char **e = envp; e != NULL && *e != NULL; e++)
        hs__env_entry(s, *e);
    return HS_OPTS_RUN;
}

/* One "NAME=value": a setting, or something hs__env_warn() looks at. */
static void hs__env_entry(struct hs__settings *s, const char *entry)
{
    const char *eq = strchr(entry, '=');
    if (eq == NULL || eq == entry)
        return;
    char name[128];
    size_t len = (size_t)(eq - entry);
    if (len >= sizeof(name))
        return;
    memcpy(name, entry, len);
    name[len] = '\0';
    for (int id = 0; id < O_N; id++) {
        if (hs__opts[id].env == NULL || strcasecmp(name, hs__opts[id].env))
            continue;
        if (eq[1] == '\0') { /* an empty value counts as unset */
            s->env_empty[id] = entry;
            return;
        }
        const char *prev = s->env_entry[id];
        if (prev != NULL)
            fprintf(stderr,
                    "hubsim: warning: %.*s and %s are the same setting; "
                    "the last, %s, wins\n",
                    (int)strcspn(prev, "="), prev, name, entry);
        s->value[id] = eq + 1;
        s->env_entry[id] = entry;
        return;
    }
}

/*
 * Once flags and the File are in: warns about environment names that are
 * settings hubsim does not implement, or look like misspelt settings.
 */
static void hs__env_warn(const struct hs__settings *s)
{
    for (int id = 0; id < O_N; id++)
        if (s->env_empty[id] != NULL && s->value[id] == NULL)
            fprintf(stderr,
                    "hubsim: warning: %.*s is empty in the environment; "
                    "ignored\n",
                    (int)strcspn(s->env_empty[id], "="), s->env_empty[id]);
    for (char **e = s->envp; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        char name[128];
        size_t len = eq ? (size_t)(eq - *e) : 0;
        if (len == 0 || len >= sizeof(name))
            continue;
        memcpy(name, *e, len);
        name[len] = '\0';
        hs__not_ours(s, name, "environment");
    }
}

/*
 * True (after a warning where due) when name is no setting: one hubsim
 * does not implement yet, a typo, or a name foreign to the simulator. A
 * template named by PayloadDistribution counts as a setting.
 */
static bool hs__not_ours(const struct hs__settings *s, const char *name,
                         const char *where)
{
    for (int id = 0; id < O_N; id++)
        if (hs__opts[id].env != NULL && strcasecmp(name, hs__opts[id].env) == 0)
            return false;
    const char *dist = s->value[O_PAYLOAD_DIST];
    if (dist != NULL && hs_payload_dist_names(dist, name))
        return false;
    for (size_t i = 0; i < sizeof(hs__env_later) / sizeof(char *); i++) {
        if (strcasecmp(name, hs__env_later[i]) == 0) {
            fprintf(stderr,
                    "hubsim: warning: %s (%s) is not supported by hubsim "
                    "yet; ignored\n",
                    name, where);
            return true;
        }
    }
    hs__env_unknown(name, where);
    return true;
}

/* Warns about a name that looks meant for the simulator. */
static void hs__env_unknown(const char *name, const char *where)
{
    const char *known[O_N + sizeof(hs__env_later) / sizeof(char *)];
    size_t n = 0;
    for (int id = 0; id < O_N; id++)
        if (hs__opts[id].env != NULL)
            known[n++] = hs__opts[id].env;
    for (size_t i = 0; i < sizeof(hs__env_later) / sizeof(char *); i++)
        known[n++] = hs__env_later[i];
    const char *near = hs_opts_suggest(name, known, n);
    bool stem = false;
    for (size_t i = 0; i < sizeof(hs__env_stems) / sizeof(char *); i++)
        stem |=
            strncasecmp(name, hs__env_stems[i], strlen(hs__env_stems[i])) == 0;
    if (near == NULL && !stem)
        return;
    if (near == NULL) {
        unsigned best = 99;
        for (size_t i = 0; i < n; i++) {
            unsigned d = hs_opts_distance(name, known[i]);
            if (d < best) {
                best = d;
                near = known[i];
            }
        }
    }
    fprintf(stderr,
            "hubsim: warning: unknown setting %s in the %s; did you mean "
            "%s?\n",
            name, where, near);
}

static enum hs_opts_rc hs__read_argv(struct hs__settings *s, int argc,
                                     char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0)
            arg = "--help";
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            fprintf(stderr, "hubsim: unexpected argument %s (see --help)\n",
                    arg);
            return HS_OPTS_ERROR;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int id = hs__find_flag(name, len);
        if (id < 0) {
            hs__flag_suggest(name, len);
            return HS_OPTS_ERROR;
        }
        const char *value = "1";
        if (hs__opts[id].has_arg) {
            if (eq == NULL && i + 1 >= argc) {
                fprintf(stderr, "hubsim: --%s needs a value\n",
                        hs__opts[id].flag);
                return HS_OPTS_ERROR;
            }
            value = eq ? eq + 1 : argv[++i];
        } else if (eq != NULL) {
            fprintf(stderr, "hubsim: --%s takes no value\n", hs__opts[id].flag);
            return HS_OPTS_ERROR;
        }
        s->value[id] = value;
        s->from_flag[id] = true;
    }
    return HS_OPTS_RUN;
}

static int hs__find_flag(const char *name, size_t len)
{
    for (int id = 0; id < O_N; id++) {
        const char *f = hs__opts[id].flag;
        if (f != NULL && strlen(f) == len && strncmp(f, name, len) == 0)
            return id;
    }
    return -1;
}

static void hs__flag_suggest(const char *name, size_t len)
{
    char word[64];
    const char *flags[O_N];
    snprintf(word, sizeof(word), "%.*s", (int)len, name);
    for (int id = 0; id < O_N; id++)
        flags[id] = hs__opts[id].flag;
    const char *near = hs_opts_suggest(word, flags, O_N);
    if (near != NULL)
        fprintf(stderr, "hubsim: unknown option --%s; did you mean --%s?\n",
                word, near);
    else
        fprintf(stderr, "hubsim: unknown option --%s (see --help)\n", word);
}

/* ------------------------------------------------------------------ */
/* Turning settings into a configuration                               */
/* ------------------------------------------------------------------ */

static int hs__finish(struct hs_config *cfg, const struct hs__settings *s)
{
    if (hs__fin_devices(cfg, s) < 0 || hs__fin_identity(cfg, s) < 0 ||
        hs__fin_transport(cfg, s) < 0 || hs__fin_load(cfg, s) < 0 ||
        hs__fin_payload(cfg, s) < 0 || hs__dev_intervals(cfg, s) < 0 ||
        hs__fin_timing(cfg, s) < 0 || hs__fin_output(cfg, s) < 0)
        return -1;
    return 0;
}

/* Prints "hubsim: SETTING: message" and returns -1. */
static int hs__bad(const struct hs__settings *s, enum hs__id id,
                   const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "hubsim: %s: %s\n", hs__name(s, id), msg);
    return -1;
}

/*
 * "--devices" when the value came from a flag, "DeviceCount" from the
 * environment, "DeviceCount (in FILE)" from the File.
 */
static const char *hs__name(const struct hs__settings *s, enum hs__id id)
{
    static __thread char buf[300];
    if (s->from_file[id]) {
        snprintf(buf, sizeof(buf), "%s (in %s)", hs__opts[id].env,
                 s->value[O_FILE]);
        return buf;
    }
    if (!s->from_flag[id] && hs__opts[id].env != NULL)
        return hs__opts[id].env;
    snprintf(buf, sizeof(buf), "--%s", hs__opts[id].flag);
    return buf;
}

static int hs__uint(const struct hs__settings *s, enum hs__id id, uint64_t min,
                    uint64_t max, uint64_t *out)
{
    const char *t = s->value[id];
    char *end;
    if (!isdigit((unsigned char)t[0]))
        return hs__bad(s, id, "not a whole number: %s", t);
    errno = 0;
    unsigned long long v = strtoull(t, &end, 10);
    if (*end != '\0')
        return hs__bad(s, id, "not a whole number: %s", t);
    if (errno == ERANGE || v < min || v > max)
        return hs__bad(s, id, "%s is out of range (%llu..%llu)", t,
                       (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

static int hs__number(const struct hs__settings *s, enum hs__id id, double *out)
{
    char *end;
    double v = strtod(s->value[id], &end);
    if (end == s->value[id] || *end != '\0' || !isfinite(v) || v < 0)
        return hs__bad(s, id, "not a number >= 0: %s", s->value[id]);
    *out = v;
    return 0;
}

/* A bare number counts in unit_ms; otherwise "500ms", "5s", "2m", "1h". */
static int hs__parse_duration(const char *text, uint64_t unit_ms, uint64_t *ms,
                              const char **why)
{
    size_t n = strspn(text, "0123456789");
    if (n > 0 && text[n] == '\0') {
        if (n > 12) {
            *why = "too large";
            return -1;
        }
        *ms = strtoull(text, NULL, 10) * unit_ms;
        return 0;
    }
    return hg_duration_parse(text, ms, why);
}

static int hs__duration(const struct hs__settings *s, enum hs__id id,
                        uint64_t unit_ms, uint64_t *ms)
{
    const char *why = NULL;
    if (hs__parse_duration(s->value[id], unit_ms, ms, &why) < 0)
        return hs__bad(s, id, "%s: %s", s->value[id], why);
    return 0;
}

/*
 * The interval list: milliseconds split on ',' or ';', each >= 1 ms. An
 * empty item ("1,,2") is refused rather than skipped: it is more likely a
 * value lost than one meant away. A single trailing separator is allowed.
 */
static int hs__intervals(struct hs_config *cfg, const struct hs__settings *s,
                         enum hs__id id)
{
    const char *p = s->value[id];
    size_t cap = strlen(p) / 2 + 1;
    cfg->intervals = calloc(cap, sizeof(*cfg->intervals));
    cfg->nintervals = 0;
    while (*p != '\0') {
        char tok[64];
        size_t len = strcspn(p, ",;");
        const char *a = p, *b = p + len;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        bool last = p[len] == '\0' || p[len + 1] == '\0';
        if (a == b && last && cfg->nintervals > 0)
            break;
        if (a == b)
            return hs__bad(s, id, "empty item in %s", s->value[id]);
        snprintf(tok, sizeof(tok), "%.*s", (int)(b - a), a);
        uint64_t ms;
        const char *why = NULL;
        if ((size_t)(b - a) >= sizeof(tok) ||
            hs__parse_duration(tok, 1, &ms, &why) < 0 || ms < 1 ||
            ms > 86400000)
            return hs__bad(s, id, "bad interval %s (1 ms to 24 h)", tok);
        cfg->intervals[cfg->nintervals++] = (uint32_t)ms;
        p += len + (p[len] ? 1 : 0);
    }
    if (cfg->nintervals == 0)
        return hs__bad(s, id, "no interval given");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Identity: hub name, credentials, device ids                         */
/* ------------------------------------------------------------------ */

static int hs__fin_identity(struct hs_config *cfg, const struct hs__settings *s)
{
    if (s->value[O_HUB] != NULL)
        cfg->hub = strdup(s->value[O_HUB]);
    if (hs__fin_credentials(cfg, s) < 0 || hs__fin_x509(cfg, s) < 0)
        return -1;
    bool explicit_ids = s->value[O_DEVICES] || s->value[O_DEVICE_LIST];
    if (s->value[O_CONNSTR] != NULL &&
        hs__fin_connstr(cfg, s, explicit_ids,
                        cfg->auth != HS_AUTH_NONE || cfg->cert ||
                            cfg->cert_dir) < 0)
        return -1;
    if (cfg->hub == NULL) {
        fprintf(stderr, "hubsim: no hub name: give --hub or a connection "
                        "string (IotHubConnectionString)\n");
        return -1;
    }
    const char *why = NULL;
    size_t len = strlen(cfg->hub);
    if (len > 0 && cfg->hub[len - 1] == '.')
        cfg->hub[--len] = '\0';
    if (hg_hostname_check(cfg->hub, len, &why) < 0) {
        fprintf(stderr, "hubsim: hub name %s: %s\n", cfg->hub, why);
        return -1;
    }
    uint64_t ttl_ms = 3600000;
    if (s->value[O_SAS_TTL] && hs__duration(s, O_SAS_TTL, 1000, &ttl_ms) < 0)
        return -1;
    /* Renewal comes at 75-85 % of the lifetime: a shorter one would leave
     * no time to connect and publish between renewals. */
    if (ttl_ms < HS_SAS_TTL_MIN_MS)
        return hs__bad(s, O_SAS_TTL, "%s: at least %d s", s->value[O_SAS_TTL],
                       HS_SAS_TTL_MIN_MS / 1000);
    cfg->sas_ttl_s = ttl_ms / 1000;
    if (s->value[O_SAS_EXPIRY] &&
        hs__uint(s, O_SAS_EXPIRY, 1, UINT32_MAX * 4ull, &cfg->sas_expiry) < 0)
        return -1;
    return 0;
}

/* At most one credential flag; it wins over a connection string's. */
static int hs__fin_credentials(struct hs_config *cfg,
                               const struct hs__settings *s)
{
    const enum hs__id creds[] = {O_DEVICE_KEY, O_GROUP_KEY, O_POLICY_KEY,
                                 O_SAS_TOKEN};
    const enum hs_auth kinds[] = {HS_AUTH_DEVICE_KEY, HS_AUTH_GROUP_KEY,
                                  HS_AUTH_POLICY, HS_AUTH_TOKEN};
    for (size_t i = 0; i < 4; i++) {
        if (s->value[creds[i]] == NULL)
            continue;
        if (cfg->auth != HS_AUTH_NONE)
            return hs__bad(s, creds[i],
                           "give only one of --device-key, "
                           "--group-key, --policy-key and "
                           "--sas-token");
        cfg->auth = kinds[i];
        if (kinds[i] == HS_AUTH_TOKEN)
            cfg->token = strdup(s->value[O_SAS_TOKEN]);
        else if (hs__key(s, creds[i], cfg) < 0)
            return -1;
    }
    if (cfg->auth == HS_AUTH_POLICY)
        cfg->policy = strdup(s->value[O_POLICY_NAME] ? s->value[O_POLICY_NAME]
                                                     : "device");
    else if (s->value[O_POLICY_NAME] != NULL)
        return hs__bad(s, O_POLICY_NAME, "only goes with --policy-key");
    return 0;
}

/*
 * X.509 devices: --cert with --key, or --cert-dir. They authenticate with
 * the certificate alone, so no token credential goes with them. The files
 * are loaded (and checked) when the run starts.
 */
static int hs__fin_x509(struct hs_config *cfg, const struct hs__settings *s)
{
    if (!s->value[O_CERT] != !s->value[O_KEY])
        return hs__bad(s, s->value[O_CERT] ? O_CERT : O_KEY,
                       "--cert and --key go together");
    if (s->value[O_CERT] && s->value[O_CERT_DIR])
        return hs__bad(s, O_CERT_DIR, "give either --cert/--key or it");
    if (!s->value[O_CERT] && !s->value[O_CERT_DIR])
        return 0;
    if (cfg->auth != HS_AUTH_NONE)
        return hs__bad(s, s->value[O_CERT] ? O_CERT : O_CERT_DIR,
                       "X.509 devices use no key or token");
    const enum hs__id files[] = {O_CERT, O_KEY, O_CERT_DIR};
    char **dst[] = {&cfg->cert, &cfg->cert_key, &cfg->cert_dir};
    for (size_t i = 0; i < 3; i++) {
        if (s->value[files[i]] == NULL)
            continue;
        if (access(s->value[files[i]], R_OK) != 0)
            return hs__bad(s, files[i], "%s: %s", s->value[files[i]],
                           strerror(errno));
        *dst[i] = strdup(s->value[files[i]]);
    }
    return 0;
}

static int hs__key(const struct hs__settings *s, enum hs__id id,
                   struct hs_config *cfg)
{
    long n = hs_sas_key_decode(s->value[id], cfg->key);
    if (n < 0)
        return hs__bad(s, id, "not a base64 key");
    cfg->key_len = (size_t)n;
    return 0;
}

/*
 * A hub connection string gives the hub and a policy key; a device one
 * gives the hub, the one device and its key or token. Credential flags and
 * --hub win over what the string says.
 */
static int hs__fin_connstr(struct hs_config *cfg, const struct hs__settings *s,
                           bool explicit_ids, bool have_cred)
{
    struct hs_connstr cs;
    const char *why = NULL;
    if (hs_connstr_parse(s->value[O_CONNSTR], &cs, &why) < 0)
        return hs__bad(s, O_CONNSTR, "%s", why);
    int rc = 0;
    if (cfg->hub == NULL)
        cfg->hub = strdup(cs.host_name);
    if (cs.x509 && !have_cred)
        rc = hs__bad(s, O_CONNSTR,
                     "x509=true: give --cert and --key, or --cert-dir");
    else if (hs_connstr_kind(&cs) == HS_CONNSTR_DEVICE && explicit_ids)
        rc = hs__bad(s, O_CONNSTR,
                     "a device connection string names one device; use a hub "
                     "connection string or --device-key for several");
    if (rc == 0 && hs_connstr_kind(&cs) == HS_CONNSTR_DEVICE) {
        for (uint32_t i = 0; i < cfg->ndevices; i++)
            free(cfg->device_ids[i]);
        cfg->ndevices = 0;
        why = hs__add_id(cfg, cs.device_id, strlen(cs.device_id));
        if (why != NULL)
            rc = hs__bad(s, O_CONNSTR, "DeviceId: %s", why);
    }
    if (rc == 0 && !have_cred && cs.sas != NULL) {
        cfg->auth = HS_AUTH_TOKEN;
        cfg->token = strdup(cs.sas);
    } else if (rc == 0 && !have_cred && cs.key != NULL) {
        cfg->key_len = (size_t)hs_sas_key_decode(cs.key, cfg->key);
        cfg->auth = cs.key_name ? HS_AUTH_POLICY : HS_AUTH_DEVICE_KEY;
        cfg->policy = cs.key_name ? strdup(cs.key_name) : NULL;
    }
    hs_connstr_free(&cs);
    return rc;
}

/*
 * The device ids: an explicit list, or prefix + six-digit index. A list
 * from the environment gives way to --devices, --prefix or --index flags.
 */
static int hs__fin_devices(struct hs_config *cfg, const struct hs__settings *s)
{
    bool gen_flag = s->from_flag[O_DEVICES] || s->from_flag[O_PREFIX] ||
                    s->from_flag[O_INDEX];
    bool list = s->value[O_DEVICE_LIST] != NULL;
    if (list && !s->from_flag[O_DEVICE_LIST] && gen_flag) {
        fprintf(stderr, "hubsim: warning: DeviceList (environment) ignored: "
                        "--devices, --prefix or --index given\n");
        list = false;
    }
    if (list && s->from_flag[O_DEVICE_LIST] && gen_flag)
        return hs__bad(s, O_DEVICE_LIST,
                       "give either a list or --devices/--prefix/--index");
    return list ? hs__ids_from_list(cfg, s) : hs__ids_generated(cfg, s);
}

static int hs__ids_from_list(struct hs_config *cfg,
                             const struct hs__settings *s)
{
    const char *p = s->value[O_DEVICE_LIST];
    while (*p) {
        size_t len = strcspn(p, ",;");
        const char *a = p, *b = p + len;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        const char *why = b > a ? hs__add_id(cfg, a, (size_t)(b - a)) : NULL;
        if (why != NULL)
            return hs__bad(s, O_DEVICE_LIST, "bad device id %.*s: %s",
                           (int)(b - a), a, why);
        p += len + (p[len] ? 1 : 0);
    }
    if (cfg->ndevices == 0)
        return hs__bad(s, O_DEVICE_LIST, "no device id in the list");
    return hs__ids_unique(cfg, s);
}

static int hs__strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Two devices with one id would take over each other's session on the hub
 * for the whole run: refuse a list that names one twice.
 */
static int hs__ids_unique(const struct hs_config *cfg,
                          const struct hs__settings *s)
{
    char **sorted = malloc(cfg->ndevices * sizeof(*sorted));
    if (sorted == NULL)
        return hs__bad(s, O_DEVICE_LIST, "out of memory");
    memcpy(sorted, cfg->device_ids, cfg->ndevices * sizeof(*sorted));
    qsort(sorted, cfg->ndevices, sizeof(*sorted), hs__strcmp_p);
    int rc = 0;
    for (uint32_t i = 1; rc == 0 && i < cfg->ndevices; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            rc = hs__bad(s, O_DEVICE_LIST, "device id %s is listed twice",
                         sorted[i]);
    free(sorted);
    return rc;
}

static int hs__ids_generated(struct hs_config *cfg,
                             const struct hs__settings *s)
{
    uint64_t count = 1, index = 1;
    const char *prefix = s->value[O_PREFIX] ? s->value[O_PREFIX] : "sim";
    if (s->value[O_DEVICES] && hs__uint(s, O_DEVICES, 1, 1000000, &count) < 0)
        return -1;
    if (s->value[O_INDEX] && hs__uint(s, O_INDEX, 0, 999999999, &index) < 0)
        return -1;
    cfg->device_ids = calloc(count, sizeof(char *));
    if (cfg->device_ids == NULL)
        return hs__bad(s, O_DEVICES, "out of memory");
    for (uint64_t i = 0; i < count; i++) {
        char id[HS_DEVICE_ID_MAX + 32];
        int n = snprintf(id, sizeof(id), "%s%06llu", prefix,
                         (unsigned long long)(index + i));
        const char *why = hs__add_id(cfg, id, (size_t)n);
        if (why != NULL)
            return hs__bad(s, O_PREFIX, "makes a bad device id %s: %s", id,
                           why);
    }
    return 0;
}

/* Appends a copy of id[0..len). Returns NULL, or why the id is refused. */
static const char *hs__add_id(struct hs_config *cfg, const char *id, size_t len)
{
    char *copy = strndup(id, len);
    char **ids = realloc(cfg->device_ids,
                         (cfg->ndevices + 1) * sizeof(*cfg->device_ids));
    if (copy == NULL || ids == NULL) {
        free(copy);
        return "out of memory";
    }
    cfg->device_ids = ids;
    const char *why = hs__device_id_check(copy);
    if (why != NULL) {
        free(copy);
        return why;
    }
    ids[cfg->ndevices++] = copy;
    return NULL;
}

/*
 * IoT Hub device ids: 1..128 ASCII letters, digits and -.%_*?!(),:=@$'
 * (what the hub accepts; anything else, non-ASCII included, it refuses).
 */
static const char *hs__device_id_check(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > HS_DEVICE_ID_MAX)
        return "must be 1 to 128 characters";
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p >= 0x80 ||
            (!isalnum(*p) && strchr("-.%_*?!(),:=@$'", *p) == NULL))
            return "IoT Hub allows only ASCII letters, digits and "
                   "-.%_*?!(),:=@$'";
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Transport                                                           */
/* ------------------------------------------------------------------ */

static int hs__fin_transport(struct hs_config *cfg,
                             const struct hs__settings *s)
{
    const char *proto = s->value[O_PROTOCOL] ? s->value[O_PROTOCOL] : "mqtt";
    if (strcmp(proto, "mqtt") == 0)
        cfg->protocol = HS_PROTO_MQTT;
    else if (strcmp(proto, "mqtt-ws") == 0)
        cfg->protocol = HS_PROTO_MQTT_WS;
    else if (strcmp(proto, "amqp") == 0)
        cfg->protocol = HS_PROTO_AMQP;
    else if (strcmp(proto, "amqp-ws") == 0)
        cfg->protocol = HS_PROTO_AMQP_WS;
    else
        return hs__bad(s, O_PROTOCOL, "%s: not mqtt, mqtt-ws, amqp or amqp-ws",
                       proto);
    static const uint16_t ports[] = {8883, 443, 5671, 443};
    cfg->port = ports[cfg->protocol];
    if (hs__fin_amqp(cfg, s) < 0)
        return -1;
    if (s->value[O_CONNECT_TO] != NULL) {
        char host[HG_HOST_BUF];
        uint16_t port = 0;
        const char *why = NULL;
        if (hg_hostport_split(s->value[O_CONNECT_TO], host, sizeof(host), &port,
                              &why) < 0)
            return hs__bad(s, O_CONNECT_TO, "%s", why);
        if (port != 0)
            cfg->port = port;
        if (hs__ip(host, cfg->port, &cfg->connect_to, &cfg->connect_to_len))
            return hs__bad(s, O_CONNECT_TO,
                           "%s is not an IP address (the hub's name goes in "
                           "--hub; it is sent as SNI and checked)",
                           host);
        cfg->have_connect_to = true;
    }
    cfg->cafile = s->value[O_CAFILE] ? strdup(s->value[O_CAFILE]) : NULL;
    if (cfg->cafile && access(cfg->cafile, R_OK) != 0)
        return hs__bad(s, O_CAFILE, "%s: %s", cfg->cafile, strerror(errno));
    cfg->ws_path = strdup(s->value[O_WS_PATH] ? s->value[O_WS_PATH]
                                              : "/$iothub/websocket");
    if (cfg->ws_path[0] != '/' || strpbrk(cfg->ws_path, " \r\n"))
        return hs__bad(s, O_WS_PATH, "must start with '/', without spaces");
    if (s->value[O_BIND] && hs__binds(cfg, s) < 0)
        return -1;
    for (size_t i = 0; cfg->have_connect_to && i < cfg->nbinds; i++)
        if (cfg->binds[i].ss_family != cfg->connect_to.ss_family)
            return hs__bad(
                s, O_BIND,
                "%s address for an %s --connect-to: give "
                "addresses of the target's family",
                cfg->binds[i].ss_family == AF_INET ? "an IPv4" : "an IPv6",
                cfg->connect_to.ss_family == AF_INET ? "IPv4" : "IPv6");
    return 0;
}

/*
 * The AMQP settings: devices per connection, how the connection and the
 * devices authenticate, and where messages go. Claims-based security needs
 * a credential to make tokens from; PLAIN needs a user.
 */
static int hs__fin_amqp(struct hs_config *cfg, const struct hs__settings *s)
{
    uint64_t v = 995;
    const char *auth = s->value[O_AMQP_AUTH];
    if (s->value[O_DEVS_PER_CONN] &&
        hs__uint(s, O_DEVS_PER_CONN, 1, 65535, &v) < 0)
        return -1;
    cfg->devices_per_conn = (uint32_t)v;
    if (auth == NULL)
        cfg->amqp_auth =
            cfg->auth == HS_AUTH_NONE ? HS_AMQP_ANONYMOUS : HS_AMQP_CBS;
    else if (strcmp(auth, "cbs") == 0)
        cfg->amqp_auth = HS_AMQP_CBS;
    else if (strcmp(auth, "plain") == 0)
        cfg->amqp_auth = HS_AMQP_PLAIN;
    else if (strcmp(auth, "anonymous") == 0)
        cfg->amqp_auth = HS_AMQP_ANONYMOUS;
    else
        return hs__bad(s, O_AMQP_AUTH, "%s: not cbs, plain or anonymous", auth);
    bool amqp = cfg->protocol >= HS_PROTO_AMQP;
    if (amqp && s->value[O_C2D])
        return hs__bad(s, O_C2D, "not supported over AMQP yet");
    /* Not over AMQP yet: properties, per-device certificates (devices
     * share a TLS connection) and storms. */
    static const enum hs__id not_amqp[] = {O_PROPERTIES, O_HEADER, O_CERT_DIR,
                                           O_STORM_AT};
    for (size_t i = 0; amqp && i < sizeof(not_amqp) / sizeof(*not_amqp); i++)
        if (s->value[not_amqp[i]])
            return hs__bad(s, not_amqp[i], "not supported over AMQP yet");
    if (amqp && cfg->amqp_auth == HS_AMQP_CBS && cfg->auth == HS_AUTH_NONE)
        return hs__bad(s, O_AMQP_AUTH,
                       "cbs needs a key, token or connection string");
    if (amqp && cfg->amqp_auth == HS_AMQP_PLAIN && !s->value[O_AMQP_USER])
        return hs__bad(s, O_AMQP_AUTH, "plain needs --amqp-user");
    cfg->amqp_user =
        s->value[O_AMQP_USER] ? strdup(s->value[O_AMQP_USER]) : NULL;
    cfg->amqp_password =
        strdup(s->value[O_AMQP_PASSWORD] ? s->value[O_AMQP_PASSWORD] : "");
    cfg->amqp_address = strdup(s->value[O_AMQP_ADDRESS]
                                   ? s->value[O_AMQP_ADDRESS]
                                   : "/devices/{deviceId}/messages/events");
    if (cfg->amqp_address[0] == '\0')
        return hs__bad(s, O_AMQP_ADDRESS, "must not be empty");
    /* Over MQTT they would be ignored: say so, a wrong --protocol is the
     * likelier mistake. */
    static const enum hs__id only_amqp[] = {O_DEVS_PER_CONN, O_AMQP_AUTH,
                                            O_AMQP_USER, O_AMQP_PASSWORD,
                                            O_AMQP_ADDRESS};
    for (size_t i = 0; !amqp && i < sizeof(only_amqp) / sizeof(*only_amqp); i++)
        if (s->value[only_amqp[i]])
            fprintf(stderr,
                    "hubsim: warning: %s is only used over AMQP (--protocol "
                    "amqp or amqp-ws); ignored over %s\n",
                    hs__name(s, only_amqp[i]), hs_protocol_name(cfg->protocol));
    return 0;
}

/* An IPv4 or IPv6 literal (no brackets) with port into ss. */
static int hs__ip(const char *text, uint16_t port, struct sockaddr_storage *ss,
                  socklen_t *len)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

static int hs__binds(struct hs_config *cfg, const struct hs__settings *s)
{
    char *copy = strdup(s->value[O_BIND]), *save = NULL;
    cfg->binds = calloc(strlen(copy) / 2 + 1, sizeof(*cfg->binds));
    for (char *t = strtok_r(copy, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        socklen_t len;
        char *ip = t;
        size_t n = strlen(ip);
        if (ip[0] == '[' && n > 2 && ip[n - 1] == ']') {
            ip[n - 1] = '\0';
            ip++;
        }
        if (hs__ip(ip, 0, &cfg->binds[cfg->nbinds], &len) < 0) {
            hs__bad(s, O_BIND, "%s is not an IP address", t);
            free(copy);
            return -1;
        }
        cfg->nbinds++;
    }
    free(copy);
    return cfg->nbinds ? 0 : hs__bad(s, O_BIND, "no address given");
}

/* ------------------------------------------------------------------ */
/* Load shape and timing                                               */
/* ------------------------------------------------------------------ */

static int hs__fin_load(struct hs_config *cfg, const struct hs__settings *s)
{
    uint64_t v;
    cfg->messages = 100;
    if (s->value[O_MESSAGES] &&
        hs__uint(s, O_MESSAGES, 0, UINT64_MAX / 2, &cfg->messages) < 0)
        return -1;
    enum hs__id iv = O_INTERVAL;
    if (s->value[O_INTERVALS] && !s->from_flag[O_INTERVAL])
        iv = O_INTERVALS;
    if (iv == O_INTERVALS && s->value[O_INTERVAL]) {
        char one[300]; /* hs__name's buffer serves one call at a time */
        snprintf(one, sizeof(one), "%s", hs__name(s, O_INTERVAL));
        fprintf(stderr,
                "hubsim: warning: %s and %s both set; Intervals "
                "wins\n",
                one, hs__name(s, O_INTERVALS));
    }
    if (s->value[iv] != NULL) {
        if (hs__intervals(cfg, s, iv) < 0)
            return -1;
    } else {
        cfg->intervals = calloc(1, sizeof(*cfg->intervals));
        cfg->intervals[0] = 1000;
        cfg->nintervals = 1;
    }
    cfg->qos = 1;
    if (s->value[O_QOS] && hs__uint(s, O_QOS, 0, 1, &v) < 0)
        return -1;
    if (s->value[O_QOS])
        cfg->qos = (uint8_t)v;
    const char *tpl =
        s->value[O_TEMPLATE] ? s->value[O_TEMPLATE] : HS_TEMPLATE_DEFAULT;
    if (hs_template_compile(&cfg->template, tpl) < 0)
        return hs__bad(s, O_TEMPLATE, "out of memory");
    if (s->value[O_PAYLOAD_SIZE]) {
        if (hs__uint(s, O_PAYLOAD_SIZE, 0, HS_PAYLOAD_MAX, &v) < 0)
            return -1;
        cfg->payload_size = (size_t)v;
        if (s->value[O_TEMPLATE])
            fprintf(stderr, "hubsim: warning: --payload-size replaces the "
                            "template\n");
    }
    if (s->value[O_PROPERTIES]) {
        cfg->properties = strdup(s->value[O_PROPERTIES]);
        if (strpbrk(cfg->properties, "/+# ") != NULL)
            return hs__bad(s, O_PROPERTIES,
                           "must be URL-encoded "
                           "(no '/', '+', '#' or space)");
    }
    cfg->ramp = 100;
    if (s->value[O_RAMP] && hs__number(s, O_RAMP, &cfg->ramp) < 0)
        return -1;
    cfg->inflight = 16;
    if (s->value[O_INFLIGHT] && hs__uint(s, O_INFLIGHT, 1, 65535, &v) < 0)
        return -1;
    if (s->value[O_INFLIGHT])
        cfg->inflight = (uint32_t)v;
    cfg->clean_session = true;
    if (s->value[O_CLEAN_SESSION] && hs__uint(s, O_CLEAN_SESSION, 0, 1, &v) < 0)
        return -1;
    if (s->value[O_CLEAN_SESSION])
        cfg->clean_session = v == 1;
    cfg->c2d = s->value[O_C2D] != NULL;
    cfg->resend = true;
    if (s->value[O_RESEND] && hs__uint(s, O_RESEND, 0, 1, &v) < 0)
        return -1;
    if (s->value[O_RESEND])
        cfg->resend = v == 1;
    return s->value[O_STORM_AT] ? hs__storms(cfg, s) : 0;
}

/* --storm-at: durations into the run, split on ',', in rising order. */
static int hs__storms(struct hs_config *cfg, const struct hs__settings *s)
{
    const char *p = s->value[O_STORM_AT];
    size_t n = 1;
    for (const char *c = p; *c; c++)
        n += *c == ',';
    cfg->storm_at = calloc(n, sizeof(*cfg->storm_at));
    if (cfg->storm_at == NULL)
        return hs__bad(s, O_STORM_AT, "out of memory");
    while (cfg->nstorms < n) {
        char item[64];
        size_t len = strcspn(p, ",");
        const char *why = NULL;
        uint64_t ms = 0;
        snprintf(item, sizeof(item), "%.*s", (int)len, p);
        if (len == 0 || len >= sizeof(item) ||
            hs__parse_duration(item, 1000, &ms, &why) < 0)
            return hs__bad(s, O_STORM_AT, "%s: %s", item,
                           why ? why : "not a duration");
        if (ms == 0 || (cfg->nstorms && ms <= cfg->storm_at[cfg->nstorms - 1]))
            return hs__bad(s, O_STORM_AT, "%s: times must rise, above 0", item);
        cfg->storm_at[cfg->nstorms++] = ms;
        p += len + (p[len] ? 1 : 0);
    }
    return 0;
}

static int hs__fin_timing(struct hs_config *cfg, const struct hs__settings *s)
{
    uint64_t ka = 60000, v;
    if (s->value[O_DURATION] &&
        hs__duration(s, O_DURATION, 1000, &cfg->duration_ms) < 0)
        return -1;
    if (s->value[O_KEEPALIVE] && hs__duration(s, O_KEEPALIVE, 1000, &ka) < 0)
        return -1;
    if (ka / 1000 > 65535)
        return hs__bad(s, O_KEEPALIVE, "at most 65535 s");
    cfg->keepalive_s = (uint32_t)(ka / 1000);
    cfg->connect_timeout_ms = 30000;
    cfg->ack_timeout_ms = 30000;
    cfg->drain_timeout_ms = 10000;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 60000;
    const struct {
        enum hs__id id;
        uint64_t *ms;
    } durations[] = {
        {O_CONNECT_TIMEOUT, &cfg->connect_timeout_ms},
        {O_ACK_TIMEOUT, &cfg->ack_timeout_ms},
        {O_DRAIN_TIMEOUT, &cfg->drain_timeout_ms},
        {O_BACKOFF_BASE, &cfg->backoff_base_ms},
        {O_BACKOFF_MAX, &cfg->backoff_max_ms},
    };
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++)
        if (s->value[durations[i].id] &&
            hs__duration(s, durations[i].id, 1000, durations[i].ms) < 0)
            return -1;
    if (cfg->connect_timeout_ms == 0 || cfg->ack_timeout_ms == 0)
        return hs__bad(s, O_CONNECT_TIMEOUT, "timeouts must be above 0");
    if (s->value[O_MAX_ATTEMPTS] &&
        hs__uint(s, O_MAX_ATTEMPTS, 0, UINT32_MAX, &v) < 0)
        return -1;
    cfg->max_attempts = s->value[O_MAX_ATTEMPTS] ? (uint32_t)v : 0;
    return 0;
}

static int hs__fin_output(struct hs_config *cfg, const struct hs__settings *s)
{
    uint64_t v;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (unsigned)cores : 1;
    if (s->value[O_THREADS] &&
        hs__uint(s, O_THREADS, 1, HS_MAX_THREADS, &v) < 0)
        return -1;
    if (s->value[O_THREADS])
        cfg->threads = (unsigned)v;
    if (cfg->threads > HS_MAX_THREADS)
        cfg->threads = HS_MAX_THREADS;
    if (cfg->threads > cfg->ndevices)
        cfg->threads = cfg->ndevices;
    if (s->value[O_REPORT_JSON])
        cfg->report_json = strdup(s->value[O_REPORT_JSON]);
    if (s->value[O_REPORT_HTML])
        cfg->report_html = strdup(s->value[O_REPORT_HTML]);
    if (hs__fin_metrics(cfg, s) < 0)
        return -1;
    cfg->quiet = s->value[O_QUIET] != NULL;
    cfg->print_token = s->value[O_PRINT_TOKEN] != NULL;
    if (s->value[O_LOG_LEVEL]) {
        int level = hg_log_level_parse(s->value[O_LOG_LEVEL]);
        if (level < 0)
            return hs__bad(s, O_LOG_LEVEL, "not error, warn, info or debug");
        hg_log_configure((enum hg_log_level)level, HG_LOG_TEXT);
    }
    cfg->max_p99_ms = cfg->min_rate = -1;
    cfg->max_errors = -1;
    if (s->value[O_MAX_P99] && hs__number(s, O_MAX_P99, &cfg->max_p99_ms))
        return -1;
    if (s->value[O_MAX_P99] && cfg->qos == 0)
        return hs__bad(s, O_MAX_P99,
                       "needs --qos 1: QoS 0 messages get no PUBACK to time");
    if (s->value[O_MIN_RATE] && hs__number(s, O_MIN_RATE, &cfg->min_rate))
        return -1;
    if (s->value[O_MAX_ERRORS]) {
        if (hs__uint(s, O_MAX_ERRORS, 0, INT64_MAX, &v) < 0)
            return -1;
        cfg->max_errors = (int64_t)v;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The File, variables, payloads and per-device intervals              */
/* ------------------------------------------------------------------ */

/* A growing text; oom set when memory ran out. */
struct hs__sb {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void hs__sb_put(struct hs__sb *b, const char *text, size_t n);
static void hs__sb_str(struct hs__sb *b, const char *text);
static void hs__flat(struct hs__sb *b, const struct hs_json *v, char *path,
                     size_t plen);
static const char *hs__scalar(const struct hs_json *v);

#define HS_FILE_MAX (4 * 1024 * 1024)

/*
 * Reads the File: a JSON object of the same settings as the environment
 * (names in any case, comments and trailing commas allowed as in .NET
 * settings files). Its values win over the environment's, and flags over
 * both.
 */
static int hs__file_read(struct hs__settings *s)
{
    const char *path = s->value[O_FILE];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return hs__bad(s, O_FILE, "%s: %s", path, strerror(errno));
    s->file_text = malloc(HS_FILE_MAX + 1);
    size_t n = s->file_text ? fread(s->file_text, 1, HS_FILE_MAX + 1, f) : 0;
    int failed = ferror(f);
    fclose(f);
    if (s->file_text == NULL || failed)
        return hs__bad(s, O_FILE, "%s: cannot read it", path);
    if (n > HS_FILE_MAX)
        return hs__bad(s, O_FILE, "%s: larger than 4 MiB", path);
    struct hs_json_error je;
    if (hs_json_parse(s->file_text, n, HS_JSON_COMMENTS | HS_JSON_TRAILING,
                      &s->file, &je) < 0)
        return hs__bad(s, O_FILE, "%s:%u:%u: %s", path, je.line, je.col,
                       je.why);
    if (s->file->type != HS_JSON_OBJECT)
        return hs__bad(s, O_FILE, "%s: must hold a JSON object of settings",
                       path);
    for (size_t i = 0; i < s->file->n; i++)
        if (hs__file_member(s, s->file->keys[i], &s->file->items[i]) < 0)
            return -1;
    char where[300];
    snprintf(where, sizeof(where), "file %s", path);
    for (size_t i = 0; i < s->file->n; i++)
        if (strcasecmp(s->file->keys[i], "Logging") != 0)
            hs__not_ours(s, s->file->keys[i], where);
    return 0;
}

/* One member of the File: a setting's value, unless a flag gave it. */
static int hs__file_member(struct hs__settings *s, const char *key,
                           const struct hs_json *v)
{
    int id = 0;
    while (id < O_N &&
           (hs__opts[id].env == NULL || strcasecmp(key, hs__opts[id].env)))
        id++;
    if (id == O_N || id == O_FILE || s->from_flag[id] ||
        v->type == HS_JSON_NULL)
        return 0;
    if (id == O_INTERVALS && v->type == HS_JSON_OBJECT) {
        s->dev_intervals = v;
        return 0;
    }
    s->from_file[id] = true;
    s->node[id] = NULL;
    s->value[id] = hs__scalar(v);
    if (s->value[id] != NULL)
        return 0;
    if (id == O_VARIABLES || id == O_PAYLOADS ||
        (id == O_HEADER && v->type == HS_JSON_OBJECT)) {
        s->node[id] = v;
        return 0;
    }
    return hs__bad(s, (enum hs__id)id, "must be a string or a number, not %s",
                   hs_json_type_name(v));
}

/* A scalar's text, as .NET settings read it; NULL for arrays and objects. */
static const char *hs__scalar(const struct hs_json *v)
{
    if (v->type == HS_JSON_TRUE || v->type == HS_JSON_FALSE)
        return v->type == HS_JSON_TRUE ? "true" : "false";
    if (v->type == HS_JSON_NULL)
        return "";
    return v->str;
}

/* A setting named by PayloadDistribution's template(PCT, NAME). */
static const char *hs__lookup(void *arg, const char *name)
{
    const struct hs__settings *s = arg;
    const struct hs_json *v = hs_json_get(s->file, name);
    if (v != NULL && v->type == HS_JSON_STRING)
        return v->str;
    size_t len = strlen(name);
    for (char **e = s->envp; e != NULL && *e != NULL; e++)
        if (strncasecmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

/*
 * What messages carry: --payload-size, a PayloadDistribution, the File's
 * Payloads or the template; the variables; the Header; the fixed bag.
 */
static int hs__fin_payload(struct hs_config *cfg, const struct hs__settings *s)
{
    struct hs_payload *p = &cfg->payload;
    char err[512];
    if (hs__variables(cfg, s) < 0)
        return -1;
    const char *tpl =
        s->value[O_TEMPLATE] ? s->value[O_TEMPLATE] : HS_TEMPLATE_DEFAULT;
    const char *dist = s->value[O_PAYLOAD_DIST];
    bool payloads = s->node[O_PAYLOADS] || s->value[O_PAYLOADS];
    int rc = 0;
    if (s->value[O_PAYLOAD_SIZE] && s->from_flag[O_PAYLOAD_DIST])
        return hs__bad(s, O_PAYLOAD_DIST, "give it or --payload-size");
    if (s->value[O_PAYLOAD_SIZE]) {
        if (dist || payloads)
            fprintf(stderr, "hubsim: warning: --payload-size replaces "
                            "PayloadDistribution and Payloads\n");
        rc = hs_payload_add_fix(p, 100, NULL, cfg->payload_size, NULL);
    } else if (dist && (s->from_flag[O_PAYLOAD_DIST] || !payloads)) {
        if (payloads)
            fprintf(stderr, "hubsim: warning: Payloads ignored: "
                            "--payload-distribution given\n");
        if (hs_payload_dist_parse(p, dist, tpl, hs__lookup, (void *)s, err,
                                  sizeof(err)) < 0)
            return hs__bad(s, O_PAYLOAD_DIST, "%s", err);
    } else if (payloads) {
        if (dist)
            fprintf(stderr, "hubsim: warning: PayloadDistribution ignored: "
                            "Payloads given\n");
        if (hs__payloads(cfg, s, tpl) < 0)
            return -1;
    } else {
        rc = hs_payload_add_template(p, 100, tpl, NULL);
    }
    char *header = NULL;
    if (rc == 0 && s->node[O_HEADER]) {
        size_t n = hs_json_write(s->node[O_HEADER], NULL, 0);
        header = malloc(n + 1);
        if (header)
            hs_json_write(s->node[O_HEADER], header, n + 1);
    }
    const char *htext = header ? header : s->value[O_HEADER];
    if (rc == 0 && htext && htext[0])
        rc = hs_payload_set_header(p, htext);
    free(header);
    if (rc == 0 && cfg->properties && strlen(cfg->properties) > 1024)
        return hs__bad(s, O_PROPERTIES, "longer than 1024 bytes");
    if (rc == 0 && cfg->properties)
        rc = (p->properties = strdup(cfg->properties)) ? 0 : -1;
    if (rc < 0)
        return hs__bad(s, O_TEMPLATE, "out of memory");
    if (hs_payload_finish(p, cfg->device_ids, cfg->ndevices, err, sizeof(err)) <
        0)
        return hs__bad(s, payloads ? O_PAYLOADS : O_PAYLOAD_DIST, "%s", err);
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    struct hs_template_ctx ctx = {
        .device_id = cfg->device_ids[0], .machine_name = "hubsim", .rng = &rng};
    clock_gettime(CLOCK_REALTIME, &ctx.now);
    if (hs_payload_check_header(p, &ctx, err, sizeof(err)) < 0)
        return hs__bad(s, O_HEADER, "%s", err);
    return 0;
}

/* Variables: a JSON array from a flag or the environment, or the File's. */
static int hs__variables(struct hs_config *cfg, const struct hs__settings *s)
{
    const struct hs_json *arr = s->node[O_VARIABLES];
    struct hs_json *parsed = NULL;
    const char *text = s->value[O_VARIABLES];
    if (arr == NULL && text != NULL) {
        struct hs_json_error je;
        if (hs_json_parse(text, strlen(text), HS_JSON_BARE_KEYS, &parsed, &je) <
            0)
            return hs__bad(s, O_VARIABLES, "not JSON: %s at line %u, column %u",
                           je.why, je.line, je.col);
        arr = parsed;
    }
    /* Without Variables the simulator has one: Counter, from 1 by 1. */
    static const char dflt[] = "[{\"name\": \"Counter\"}]";
    struct hs_json_error je;
    if (arr == NULL &&
        hs_json_parse(dflt, sizeof(dflt) - 1, 0, &parsed, &je) < 0)
        return hs__bad(s, O_VARIABLES, "out of memory");
    if (arr == NULL)
        arr = parsed;
    char what[320], err[512];
    snprintf(what, sizeof(what), "%s", hs__name(s, O_VARIABLES));
    int rc = hs_vars_parse(&cfg->payload.vars, arr, what, err, sizeof(err));
    hs_json_free(parsed);
    if (rc < 0)
        fprintf(stderr, "hubsim: %s\n", err);
    /* A counter that never moves is a constant by mistake. */
    for (size_t i = 0; rc == 0 && i < cfg->payload.vars.n; i++) {
        const struct hs_vdef *d = &cfg->payload.vars.defs[i];
        if (d->kind == HS_VK_COUNTER && d->step == 0)
            rc = hs__bad(s, O_VARIABLES, "counter %s: step must not be 0",
                         d->name);
    }
    return rc;
}

/* The File's Payloads (or JSON text in the environment). */
static int hs__payloads(struct hs_config *cfg, const struct hs__settings *s,
                        const char *tpl)
{
    const struct hs_json *arr = s->node[O_PAYLOADS];
    struct hs_json *parsed = NULL;
    if (arr == NULL) {
        struct hs_json_error je;
        const char *text = s->value[O_PAYLOADS];
        if (hs_json_parse(text, strlen(text), HS_JSON_BARE_KEYS, &parsed, &je) <
            0)
            return hs__bad(s, O_PAYLOADS, "not JSON: %s at line %u, column %u",
                           je.why, je.line, je.col);
        arr = parsed;
    }
    int rc = 0;
    if (arr->type != HS_JSON_ARRAY || arr->n == 0)
        rc = hs__bad(s, O_PAYLOADS, "must be a non-empty array");
    for (size_t i = 0; rc == 0 && i < arr->n; i++) {
        char why[256];
        rc = hs__payload_item(cfg, &arr->items[i], why, sizeof(why));
        if (rc < 0)
            hs__bad(s, O_PAYLOADS, "item %zu (line %u, column %u): %s", i + 1,
                    arr->items[i].line, arr->items[i].col, why);
    }
    /* Devices without a payload of their own send the template. */
    if (rc == 0 && cfg->payload.total == 0 &&
        hs_payload_add_template(&cfg->payload, 100, tpl, NULL) < 0)
        rc = hs__bad(s, O_PAYLOADS, "out of memory");
    hs_json_free(parsed);
    return rc < 0 ? -1 : 0;
}

/*
 * One of Payloads: {"type": "template"|"fix", "deviceId", "distribution"
 * (1..100, 100), "template" | "value": text or an object}. An object is
 * sent flattened to string members, nested names joined with ':', as the
 * simulator's settings reader does. Returns 0, or -1 with why.
 */
static int hs__payload_item(struct hs_config *cfg, const struct hs_json *it,
                            char *why, size_t cap)
{
    static const char *const keys[] = {"type", "deviceId", "distribution",
                                       "template", "value"};
    if (it->type != HS_JSON_OBJECT) {
        snprintf(why, cap, "is %s, not an object", hs_json_type_name(it));
        return -1;
    }
    for (size_t k = 0; k < it->n; k++) {
        size_t j = 0;
        while (j < 5 && strcasecmp(it->keys[k], keys[j]) != 0)
            j++;
        const char *near = j < 5 ? NULL : hs_opts_suggest(it->keys[k], keys, 5);
        if (j == 5)
            fprintf(stderr,
                    "hubsim: warning: Payloads: unknown key %s ignored%s%s%s\n",
                    it->keys[k], near ? " (did you mean " : "",
                    near ? near : "", near ? "?)" : "");
    }
    const struct hs_json *type = hs_json_get(it, "type");
    const struct hs_json *dev = hs_json_get(it, "deviceId");
    const struct hs_json *dist = hs_json_get(it, "distribution");
    int64_t pct = 100;
    bool is_tpl = type && type->type == HS_JSON_STRING &&
                  strcasecmp(type->str, "template") == 0;
    bool is_fix = type && type->type == HS_JSON_STRING &&
                  strcasecmp(type->str, "fix") == 0;
    const struct hs_json *body = hs_json_get(it, is_tpl ? "template" : "value");
    if (!is_tpl && !is_fix) {
        snprintf(why, cap, "\"type\" must be \"template\" or \"fix\"");
        return -1;
    }
    if (dev && (dev->type != HS_JSON_STRING || dev->len == 0)) {
        snprintf(why, cap, "\"deviceId\" must be a device id");
        return -1;
    }
    if (dist && (!hs_json_int(dist, &pct) || pct < 1 || pct > 100)) {
        snprintf(why, cap, "\"distribution\" must be 1 to 100");
        return -1;
    }
    if (body == NULL ||
        (body->type != HS_JSON_STRING && body->type != HS_JSON_OBJECT)) {
        snprintf(why, cap, "\"%s\" must be a string or an object",
                 is_tpl ? "template" : "value");
        return -1;
    }
    char *flat = body->type == HS_JSON_OBJECT ? hs__flatten(body) : NULL;
    const char *text = flat ? flat : body->str;
    int rc = -1;
    if (text && is_tpl)
        rc = hs_payload_add_template(&cfg->payload, (unsigned)pct, text,
                                     dev ? dev->str : NULL);
    else if (text)
        rc = hs_payload_add_fix(&cfg->payload, (unsigned)pct,
                                (const uint8_t *)text, strlen(text),
                                dev ? dev->str : NULL);
    free(flat);
    if (rc < 0)
        snprintf(why, cap, "out of memory");
    return rc;
}

/* An object as {"a":"1","b:c":"2"}: a new string, or NULL. */
static char *hs__flatten(const struct hs_json *v)
{
    struct hs__sb b = {0};
    char path[1024];
    hs__sb_put(&b, "{", 1);
    hs__flat(&b, v, path, 0);
    hs__sb_put(&b, "}", 2); /* with the NUL */
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

static void hs__flat(struct hs__sb *b, const struct hs_json *v, char *path,
                     size_t plen)
{
    if (v->type != HS_JSON_OBJECT && v->type != HS_JSON_ARRAY) {
        if (b->len > 1)
            hs__sb_put(b, ",", 1);
        path[plen] = '\0';
        hs__sb_str(b, path);
        hs__sb_put(b, ":", 1);
        hs__sb_str(b, hs__scalar(v));
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        char index[24];
        const char *key = v->keys ? v->keys[i] : index;
        snprintf(index, sizeof(index), "%zu", i);
        int n =
            snprintf(path + plen, 1024 - plen, "%s%s", plen ? ":" : "", key);
        size_t next = plen + (size_t)n < 1023 ? plen + (size_t)n : 1023;
        hs__flat(b, &v->items[i], path, next);
    }
}

static void hs__sb_put(struct hs__sb *b, const char *text, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        char *buf = realloc(b->buf, cap);
        if (buf == NULL) {
            b->oom = true;
            return;
        }
        b->buf = buf;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, text, n);
    b->len += n;
}

/* text as a JSON string. */
static void hs__sb_str(struct hs__sb *b, const char *text)
{
    struct hs_json tmp = {
        .type = HS_JSON_STRING, .str = (char *)text, .len = strlen(text)};
    size_t n = hs_json_write(&tmp, NULL, 0);
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        b->oom = true;
        return;
    }
    hs_json_write(&tmp, buf, n + 1);
    hs__sb_put(b, buf, n);
    free(buf);
}

/*
 * The File's "Intervals": {"sim000001": 10000, "sim000002": [100, 200]}.
 * A device listed there uses its own list instead of the run's.
 */
static int hs__dev_intervals(struct hs_config *cfg,
                             const struct hs__settings *s)
{
    const struct hs_json *obj = s->dev_intervals;
    if (obj == NULL)
        return 0;
    cfg->dev_intervals = calloc(cfg->ndevices, sizeof(*cfg->dev_intervals));
    if (cfg->dev_intervals == NULL)
        return hs__bad(s, O_INTERVALS, "out of memory");
    for (size_t i = 0; i < obj->n; i++) {
        uint32_t d = 0;
        while (d < cfg->ndevices && strcmp(cfg->device_ids[d], obj->keys[i]))
            d++;
        if (d == cfg->ndevices) {
            fprintf(stderr,
                    "hubsim: warning: Intervals (in %s): %s is not one of this "
                    "run's devices; ignored\n",
                    s->value[O_FILE], obj->keys[i]);
            continue;
        }
        if (hs__interval_list(&obj->items[i], &cfg->dev_intervals[d]) < 0)
            return hs__bad(s, O_FILE,
                           "Intervals: %s (line %u, column %u): give "
                           "milliseconds (1 to 86400000) as a number, an "
                           "array of numbers or a list \"100,200\"",
                           obj->keys[i], obj->items[i].line, obj->items[i].col);
    }
    return 0;
}

/* True when no item of a ','/';' list is empty (but a trailing one). */
static bool hs__list_whole(const char *p)
{
    for (;;) {
        size_t len = strcspn(p, ",;");
        if (p[len] == '\0')
            return true;
        if (strspn(p, " ") >= len)
            return false;
        p += len + 1;
    }
}

/* A number, an array of numbers or a "100,200" list into iv. */
static int hs__interval_list(const struct hs_json *v, struct hs_intervals *iv)
{
    size_t n = v->type == HS_JSON_ARRAY    ? v->n
               : v->type == HS_JSON_STRING ? v->len / 2 + 1
                                           : 1;
    iv->ms = calloc(n ? n : 1, sizeof(*iv->ms));
    if (iv->ms == NULL || n == 0)
        return -1;
    if (v->type == HS_JSON_STRING && !hs__list_whole(v->str))
        return -1;
    char *copy = v->type == HS_JSON_STRING ? strdup(v->str) : NULL, *save;
    char *tok = copy ? strtok_r(copy, ",;", &save) : NULL;
    for (size_t i = 0; i < n; i++) {
        const struct hs_json *x = v->type == HS_JSON_ARRAY ? &v->items[i] : v;
        int64_t ms = 0;
        uint64_t u = 0;
        const char *why;
        if (copy != NULL) {
            if (tok == NULL)
                break;
            while (*tok == ' ')
                tok++;
            if (hs__parse_duration(tok, 1, &u, &why) < 0)
                u = 0;
            ms = (int64_t)u;
            tok = strtok_r(NULL, ",;", &save);
        } else if (!hs_json_int(x, &ms)) {
            ms = 0;
        }
        if (ms < 1 || ms > 86400000) {
            free(copy);
            return -1;
        }
        iv->ms[iv->n++] = (uint32_t)ms;
    }
    free(copy);
    return iv->n > 0 ? 0 : -1;
}

static int hs__fin_metrics(struct hs_config *cfg, const struct hs__settings *s)
{
    const char *why = NULL;
    if (s->value[O_METRICS_LISTEN]) {
        if (hg_bind_parse(s->value[O_METRICS_LISTEN], &cfg->metrics_listen,
                          &cfg->metrics_listen_len, &why) < 0)
            return hs__bad(s, O_METRICS_LISTEN, "%s", why);
        cfg->have_metrics_listen = true;
    }
    if (s->value[O_METRICS_LINGER] &&
        hs__duration(s, O_METRICS_LINGER, 1000, &cfg->metrics_linger_ms) < 0)
        return -1;
    if (cfg->metrics_linger_ms && !cfg->have_metrics_listen)
        return hs__bad(s, O_METRICS_LINGER, "needs --metrics-listen");
    return 0;
}
