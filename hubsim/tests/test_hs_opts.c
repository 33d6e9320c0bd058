/*
 * Tests for hs_opts: the suggestion for a typo, the simulator's variables
 * and defaults, names in any case, flags over the environment, the forms
 * of credentials and connection strings, and settings that must be
 * refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "hs_opts.h"

#define KEY32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define HUB_CS                                                                 \
    "HostName=demo-hub.azure-devices.net;SharedAccessKeyName=device;"          \
    "SharedAccessKey=" KEY32

static enum hs_opts_rc parse(struct hs_config *cfg, const char *const *env,
                             const char *const *args);
static const char *tmp_file(const char *text);
static enum hs_opts_rc parse_err(struct hs_config *cfg, const char *const *env,
                                 const char *const *args, char *err,
                                 size_t cap);

/* Parses args (NULL-terminated, without argv[0]) and env. */
static enum hs_opts_rc parse(struct hs_config *cfg, const char *const *env,
                             const char *const *args)
{
    char *argv[64] = {"hubsim"};
    int argc = 1;
    while (args && args[argc - 1])
        argv[argc] = (char *)args[argc - 1], argc++;
    return hs_opts_parse(cfg, argc, argv, (char **)env);
}

static void test_distance_and_suggest(void **state)
{
    (void)state;
    assert_int_equal(hs_opts_distance("DeviceCount", "DeviceCount"), 0);
    assert_int_equal(hs_opts_distance("devicecount", "DeviceCount"), 0);
    assert_int_equal(hs_opts_distance("DeviceCont", "DeviceCount"), 1);
    assert_int_equal(hs_opts_distance("DeivceCount", "DeviceCount"), 1);
    assert_int_equal(hs_opts_distance("abc", ""), 3);
    const char *names[] = {"DeviceCount", "DevicePrefix", "Interval", "File"};
    assert_string_equal(hs_opts_suggest("DeviceCuont", names, 4),
                        "DeviceCount");
    assert_string_equal(hs_opts_suggest("Intervall", names, 4), "Interval");
    assert_string_equal(hs_opts_suggest("Files", names, 4), "File");
    assert_null(hs_opts_suggest("PATH", names, 4));
    assert_null(hs_opts_suggest("Fi", names, 4)); /* 2 edits: too far */
    assert_null(hs_opts_suggest("HOME", names, 4));
}

static void test_simulator_defaults(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *env[] = {"IotHubConnectionString=" HUB_CS, "PATH=/bin", NULL};
    assert_int_equal(parse(&cfg, env, NULL), HS_OPTS_RUN);
    assert_string_equal(cfg.hub, "demo-hub.azure-devices.net");
    assert_int_equal(cfg.auth, HS_AUTH_POLICY);
    assert_string_equal(cfg.policy, "device");
    assert_int_equal(cfg.key_len, 32);
    assert_int_equal(cfg.ndevices, 1);
    assert_string_equal(cfg.device_ids[0], "sim000001");
    assert_int_equal(cfg.messages, 100);
    assert_int_equal(cfg.nintervals, 1);
    assert_int_equal(cfg.intervals[0], 1000);
    assert_int_equal(cfg.qos, 1);
    assert_int_equal(cfg.protocol, HS_PROTO_MQTT);
    assert_int_equal(cfg.port, 8883);
    assert_false(cfg.have_connect_to);
    assert_int_equal(cfg.sas_ttl_s, 3600);
    assert_true(cfg.max_errors < 0);
    hs_config_free(&cfg);
}

static void test_env_any_case_and_lists(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *env[] = {"iothubconnectionstring=" HUB_CS,
                         "DEVICEPREFIX=dev",
                         "deviceindex=98",
                         "DeviceCount=3",
                         "Intervals=100; 250,1s",
                         "MessageCount=0",
                         NULL};
    assert_int_equal(parse(&cfg, env, NULL), HS_OPTS_RUN);
    assert_int_equal(cfg.ndevices, 3);
    assert_string_equal(cfg.device_ids[0], "dev000098");
    assert_string_equal(cfg.device_ids[2], "dev000100");
    assert_int_equal(cfg.messages, 0);
    assert_int_equal(cfg.nintervals, 3);
    assert_int_equal(cfg.intervals[1], 250);
    assert_int_equal(cfg.intervals[2], 1000);
    hs_config_free(&cfg);

    const char *env2[] = {"IotHubConnectionString=" HUB_CS,
                          "DeviceList= a1 ;b2,,c3;", "DeviceCount=9", NULL};
    assert_int_equal(parse(&cfg, env2, NULL), HS_OPTS_RUN);
    assert_int_equal(cfg.ndevices, 3);
    assert_string_equal(cfg.device_ids[0], "a1");
    assert_string_equal(cfg.device_ids[2], "c3");
    hs_config_free(&cfg);
}

static void test_flags_win(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *env[] = {"IotHubConnectionString=" HUB_CS, "DeviceCount=5",
                         "Interval=3000", "DeviceList=x,y", NULL};
    const char *args[] = {"--devices",    "2",          "--interval",
                          "70",           "--hub",      "flag.example.net",
                          "--connect-to", "[::1]:9000", NULL};
    assert_int_equal(parse(&cfg, env, args), HS_OPTS_RUN);
    assert_int_equal(cfg.ndevices, 2);
    assert_string_equal(cfg.device_ids[1], "sim000002");
    assert_int_equal(cfg.intervals[0], 70);
    assert_string_equal(cfg.hub, "flag.example.net");
    assert_true(cfg.have_connect_to);
    assert_int_equal(cfg.port, 9000);
    assert_int_equal(cfg.connect_to.ss_family, AF_INET6);
    hs_config_free(&cfg);
}

static void test_credentials(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *dev[] = {"--connection-string",
                         "HostName=h.example.net;DeviceId=d%2A1;"
                         "SharedAccessKey=" KEY32,
                         NULL};
    assert_int_equal(parse(&cfg, NULL, dev), HS_OPTS_RUN);
    assert_int_equal(cfg.auth, HS_AUTH_DEVICE_KEY);
    assert_int_equal(cfg.ndevices, 1);
    assert_string_equal(cfg.device_ids[0], "d*1");
    hs_config_free(&cfg);

    const char *sas[] = {"--connection-string",
                         "HostName=h.example.net;DeviceId=d;"
                         "SharedAccessSignature=SharedAccessSignature sr=a",
                         NULL};
    assert_int_equal(parse(&cfg, NULL, sas), HS_OPTS_RUN);
    assert_int_equal(cfg.auth, HS_AUTH_TOKEN);
    assert_string_equal(cfg.token, "SharedAccessSignature sr=a");
    hs_config_free(&cfg);

    const char *group[] = {
        "--hub", "h.example.net", "--group-key", KEY32, "--devices", "4", NULL};
    assert_int_equal(parse(&cfg, NULL, group), HS_OPTS_RUN);
    assert_int_equal(cfg.auth, HS_AUTH_GROUP_KEY);
    hs_config_free(&cfg);

    const char *policy[] = {"--hub", "h.example.net", "--policy-key", KEY32,
                            NULL};
    assert_int_equal(parse(&cfg, NULL, policy), HS_OPTS_RUN);
    assert_string_equal(cfg.policy, "device");
    hs_config_free(&cfg);

    const char *none[] = {"--hub", "h.example.net.", NULL};
    assert_int_equal(parse(&cfg, NULL, none), HS_OPTS_RUN);
    assert_int_equal(cfg.auth, HS_AUTH_NONE);
    assert_string_equal(cfg.hub, "h.example.net"); /* trailing dot */
    hs_config_free(&cfg);
}

static void test_amqp(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *env[] = {"IotHubConnectionString=" HUB_CS, NULL};
    const char *const hub[] = {"--protocol", "amqp", NULL};
    assert_int_equal(parse(&cfg, env, hub), HS_OPTS_RUN);
    assert_int_equal(cfg.protocol, HS_PROTO_AMQP);
    assert_string_equal(hs_protocol_name(cfg.protocol), "amqp");
    assert_int_equal(cfg.port, 5671);
    assert_int_equal(cfg.devices_per_conn, 995);
    assert_int_equal(cfg.amqp_auth, HS_AMQP_CBS); /* a credential: CBS */
    assert_string_equal(cfg.amqp_address,
                        "/devices/{deviceId}/messages/events");
    hs_config_free(&cfg);

    const char *const broker[] = {"--hub",
                                  "broker.example.net",
                                  "--protocol",
                                  "amqp-ws",
                                  "--amqp-auth",
                                  "plain",
                                  "--amqp-user",
                                  "u",
                                  "--amqp-password",
                                  "p",
                                  "--amqp-address",
                                  "/queue/q",
                                  "--devices-per-connection",
                                  "10",
                                  NULL};
    assert_int_equal(parse(&cfg, NULL, broker), HS_OPTS_RUN);
    assert_int_equal(cfg.protocol, HS_PROTO_AMQP_WS);
    assert_string_equal(hs_protocol_name(cfg.protocol), "amqp-ws");
    assert_int_equal(cfg.port, 443);
    assert_int_equal(cfg.devices_per_conn, 10);
    assert_int_equal(cfg.amqp_auth, HS_AMQP_PLAIN);
    assert_string_equal(cfg.amqp_user, "u");
    assert_string_equal(cfg.amqp_password, "p");
    assert_string_equal(cfg.amqp_address, "/queue/q");
    hs_config_free(&cfg);

    /* No credential: ANONYMOUS; asking for CBS then is an error. */
    const char *const anon[] = {"--hub", "b.example.net", "--protocol", "amqp",
                                NULL};
    assert_int_equal(parse(&cfg, NULL, anon), HS_OPTS_RUN);
    assert_int_equal(cfg.amqp_auth, HS_AMQP_ANONYMOUS);
    hs_config_free(&cfg);
    const char *const cbs[] = {"--hub", "b.example.net", "--protocol",
                               "amqp",  "--amqp-auth",   "cbs",
                               NULL};
    assert_int_equal(parse(&cfg, NULL, cbs), HS_OPTS_ERROR);
}

static void test_refused(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *const cases[][8] = {
        {"--qos", "2", NULL},
        {"--devices", "0", NULL},
        {"--devics", "3", NULL},
        {"--interval", "0", NULL},
        {"--interval", ",", NULL},
        {"--connect-to", "hub.example.net:8883", NULL},
        {"--protocol", "amqp10", NULL},
        {"--protocol", "amqp", "--c2d", NULL},
        {"--protocol", "amqp", "--properties", "a=1", NULL},
        {"--protocol", "amqp", "--header", "{}", NULL},
        {"--protocol", "amqp", "--storm-at", "10s", NULL},
        {"--protocol", "amqp", "--amqp-auth", "plain", NULL},
        {"--protocol", "amqp", "--amqp-auth", "sasl", NULL},
        {"--protocol", "amqp", "--devices-per-connection", "0", NULL},
        {"--device-key", KEY32, "--group-key", KEY32, NULL},
        {"--policy-name", "p", NULL},
        {"--prefix", "a/b", NULL},
        {"--device-list", "a,b c", NULL},
        {"--device-list", "a", "--devices", "2", NULL},
        {"--devices", NULL},
        {"--quiet=1", NULL},
        {"stray", NULL},
        {"--hub", "bad_name!", NULL},
        {"--duration", "5 minutes", NULL},
        {"--payload-size", "300000", NULL},
        {"--properties", "a=b/c", NULL},
        {"--connection-string", "HostName=h;DeviceId=d;SharedAccessKey=" KEY32,
         "--devices", "2", NULL},
        {"--connection-string", "HostName=h;DeviceId=d;x509=true", NULL},
    };
    const char *env[] = {"IotHubConnectionString=" HUB_CS, NULL};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (parse(&cfg, env, cases[i]) != HS_OPTS_ERROR) {
            fprintf(stderr, "case %zu (%s) was accepted\n", i, cases[i][0]);
            fail();
        }
    }
    const char *bad_env[] = {"IotHubConnectionString=" HUB_CS,
                             "DeviceCount=12x", NULL};
    assert_int_equal(parse(&cfg, bad_env, NULL), HS_OPTS_ERROR);
    assert_int_equal(parse(&cfg, NULL, NULL), HS_OPTS_ERROR); /* no hub */
}

static void test_durations(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *args[] = {
        "--hub", "h.example.net", "--duration", "90",        "--keepalive",
        "2m",    "--ack-timeout", "1500ms",     "--sas-ttl", "1h",
        NULL};
    assert_int_equal(parse(&cfg, NULL, args), HS_OPTS_RUN);
    assert_int_equal(cfg.duration_ms, 90000);
    assert_int_equal(cfg.keepalive_s, 120);
    assert_int_equal(cfg.ack_timeout_ms, 1500);
    assert_int_equal(cfg.sas_ttl_s, 3600);
    hs_config_free(&cfg);
}

/* --storm-at, --resend-unacked and X.509 files. */
static void test_storms_resend_x509(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *args[] = {"--hub", "h.example.net", "--storm-at", "500ms,2s,90",
                          NULL};
    assert_int_equal(parse(&cfg, NULL, args), HS_OPTS_RUN);
    assert_int_equal(cfg.nstorms, 3);
    assert_int_equal(cfg.storm_at[0], 500);
    assert_int_equal(cfg.storm_at[1], 2000);
    assert_int_equal(cfg.storm_at[2], 90000);
    assert_true(cfg.resend); /* at least once by default */
    assert_null(cfg.cert);
    hs_config_free(&cfg);
    const char *off[] = {"--hub", "h.example.net", "--resend-unacked",
                         "0",     "--cert",        "/dev/null",
                         "--key", "/dev/null",     NULL};
    assert_int_equal(parse(&cfg, NULL, off), HS_OPTS_RUN);
    assert_false(cfg.resend);
    assert_int_equal(cfg.nstorms, 0);
    assert_string_equal(cfg.cert, "/dev/null");
    assert_string_equal(cfg.cert_key, "/dev/null");
    assert_int_equal(cfg.auth, HS_AUTH_NONE);
    hs_config_free(&cfg);
    const char *const bad[][8] = {
        {"--storm-at", "2s,1s", NULL},
        {"--storm-at", "0", NULL},
        {"--storm-at", "1s,,2s", NULL},
        {"--storm-at", "soon", NULL},
        {"--resend-unacked", "2", NULL},
        {"--cert", "/dev/null", NULL},
        {"--key", "/dev/null", NULL},
        {"--cert", "/nonexistent/c.pem", "--key", "/dev/null", NULL},
        {"--cert-dir", "/dev", "--cert", "/dev/null", "--key", "/dev/null",
         NULL},
        {"--cert-dir", "/dev", "--device-key", KEY32, NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *full[12] = {"--hub", "h.example.net"};
        for (size_t k = 0; bad[i][k]; k++)
            full[k + 2] = bad[i][k];
        if (parse(&cfg, NULL, full) != HS_OPTS_ERROR) {
            fprintf(stderr, "case %zu (%s) was accepted\n", i, bad[i][0]);
            fail();
        }
    }
    /* An X.509 device connection string wants the files. */
    const char *x509[] = {"--connection-string",
                          "HostName=h;DeviceId=d;x509=true", "--cert-dir",
                          "/dev", NULL};
    assert_int_equal(parse(&cfg, NULL, x509), HS_OPTS_RUN);
    assert_string_equal(cfg.cert_dir, "/dev");
    assert_int_equal(cfg.ndevices, 1);
    assert_string_equal(cfg.device_ids[0], "d");
    hs_config_free(&cfg);
}

/* Writes text to a new temporary file; returns its path (static). */
static const char *tmp_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/hs-opts-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_payload_settings(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *env[] = {
        "IotHubConnectionString=" HUB_CS,
        "DeviceCount=2",
        "Variables=[{name: \"Temp\", random: true, min: 23, max: 25}, "
        "{\"name\": \"Counter\", \"min\": 100, \"max\": 102}]",
        "Header={\"k\": \"$.Counter\"}",
        "PayloadDistribution=fixSize(10, 12) template(25, default) "
        "template(65, Tpl2)",
        "tpl2=second $.Temp",
        NULL};
    assert_int_equal(parse(&cfg, env, NULL), HS_OPTS_RUN);
    assert_int_equal(cfg.payload.vars.n, 2);
    assert_int_equal(cfg.payload.nitems, 3);
    assert_int_equal(cfg.payload.items[0].kind, HS_PL_FIX);
    assert_int_equal(cfg.payload.items[0].len, 12);
    assert_string_equal(cfg.payload.items[2].tpl.text, "second $.Temp");
    assert_true(cfg.payload.has_header);
    hs_config_free(&cfg);
    /* Flags win over the environment. */
    const char *args[] = {"--payload-distribution",
                          "fix(100, AAAA)",
                          "--variables",
                          "[]",
                          "--header",
                          "{}",
                          NULL};
    assert_int_equal(parse(&cfg, env, args), HS_OPTS_RUN);
    assert_int_equal(cfg.payload.vars.n, 0);
    assert_int_equal(cfg.payload.nitems, 1);
    assert_int_equal(cfg.payload.items[0].len, 3);
    hs_config_free(&cfg);
    /* --payload-size replaces a distribution from the environment. */
    const char *size[] = {"--payload-size", "5", NULL};
    assert_int_equal(parse(&cfg, env, size), HS_OPTS_RUN);
    assert_int_equal(cfg.payload.nitems, 1);
    assert_int_equal(cfg.payload.items[0].len, 5);
    hs_config_free(&cfg);
    const char *const bad[][3] = {
        {"Variables=[{name: \"A\", random: 1}]", NULL},
        {"Variables=[{name: 'A'}]", NULL},
        {"Header=[1]", NULL},
        {"Header={\"a\": $.Nope}", NULL},
        {"PayloadDistribution=template(50, Missing)", NULL},
        {"PayloadDistribution=fixSize(50)", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *e[] = {"IotHubConnectionString=" HUB_CS, bad[i][0], NULL};
        if (parse(&cfg, e, NULL) != HS_OPTS_ERROR)
            fail_msg("%s was accepted", bad[i][0]);
    }
    const char *both[] = {"--payload-size", "5", "--payload-distribution",
                          "fix(100, AAAA)", NULL};
    assert_int_equal(parse(&cfg, env, both), HS_OPTS_ERROR);
}

static void test_file(void **state)
{
    (void)state;
    struct hs_config cfg;
    const char *path = tmp_file(
        "// as the simulator's test files are written\n"
        "{\n"
        "  \"DeviceCount\": 3, \"messagecount\": 7,\n"
        "  \"Variables\": [{\"name\": \"Value\", \"sequence\": true,\n"
        "                  \"values\": [\"$.Counter\", \"true\"]},\n"
        "                 {\"name\": \"Counter\"}],\n"
        "  \"Intervals\": {\"sim000001\": 10000,\n"
        "                \"sim000002\": [20000, 30000, 15000],\n"
        "                \"sim000009\": 5},\n"
        "  \"Payloads\": [\n"
        "    {\"type\": \"template\", \"deviceId\": \"sim000001\",\n"
        "     \"template\": {\"value\": \"$.Value\", \"n\": {\"a\": 20}}},\n"
        "    {\"type\": \"fix\", \"deviceId\": \"sim000002\",\n"
        "     \"value\": \"{\\\"value\\\":\\\"myfixvalue\\\"}\"},\n"
        "  ],\n"
        "}\n");
    const char *env[] = {"IotHubConnectionString=" HUB_CS, "DeviceCount=9",
                         "MessageCount=1", "Interval=500", NULL};
    const char *args[] = {"--file", path, "--messages", "4", NULL};
    assert_int_equal(parse(&cfg, env, args), HS_OPTS_RUN);
    /* The File wins over the environment, flags over both. */
    assert_int_equal(cfg.ndevices, 3);
    assert_int_equal(cfg.messages, 4);
    assert_int_equal(hs_config_interval(&cfg, 0, 0), 10000);
    assert_int_equal(hs_config_interval(&cfg, 0, 5), 10000);
    assert_int_equal(hs_config_interval(&cfg, 1, 0), 20000);
    assert_int_equal(hs_config_interval(&cfg, 1, 1), 30000);
    assert_int_equal(hs_config_interval(&cfg, 1, 5), 15000);
    assert_int_equal(hs_config_interval(&cfg, 2, 0), 500);
    /* Two devices' own payloads, and the template for the third. */
    assert_int_equal(cfg.payload.nitems, 3);
    assert_string_equal(cfg.payload.items[0].tpl.text,
                        "{\"value\":\"$.Value\",\"n:a\":\"20\"}");
    assert_memory_equal(cfg.payload.items[1].bytes,
                        "{\"value\":\"myfixvalue\"}", 22);
    assert_int_equal(cfg.payload.own[0], 1);
    assert_int_equal(cfg.payload.own[1], 2);
    assert_int_equal(cfg.payload.own[2], 0);
    hs_config_free(&cfg);
    unlink(path);
    const char *const bad[] = {
        "{\"DeviceCount\": 2,, }",
        "[1]",
        "{\"DeviceCount\": [2]}",
        "{\"Intervals\": {\"sim000001\": 0}}",
        "{\"Intervals\": {\"sim000001\": \"fast\"}}",
        "{\"Intervals\": {\"sim000001\": \"100,,200\"}}",
        "{\"Payloads\": [{\"type\": \"other\", \"value\": \"x\"}]}",
        "{\"Payloads\": [{\"type\": \"fix\"}]}",
        "{\"Payloads\": [{\"type\": \"fix\", \"value\": \"x\", "
        "\"distribution\": 0}]}",
        "{\"Variables\": {\"name\": \"x\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        path = tmp_file(bad[i]);
        const char *a[] = {"--file", path, NULL};
        const char *e[] = {"IotHubConnectionString=" HUB_CS, NULL};
        enum hs_opts_rc rc = parse(&cfg, e, a);
        unlink(path);
        if (rc != HS_OPTS_ERROR)
            fail_msg("%s was accepted", bad[i]);
    }
    const char *missing[] = {"--file", "/nonexistent/hs.json", NULL};
    assert_int_equal(parse(&cfg, NULL, missing), HS_OPTS_ERROR);
}

/* parse(), with what it writes to stderr caught in err. */
static enum hs_opts_rc parse_err(struct hs_config *cfg, const char *const *env,
                                 const char *const *args, char *err, size_t cap)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    dup2(fileno(tmp), 2);
    enum hs_opts_rc rc = parse(cfg, env, args);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(err, 1, cap - 1, tmp);
    err[n] = '\0';
    fclose(tmp);
    return rc;
}

/* Values that used to pass unremarked: refused, each with its reason. */
static void test_refused_values(void **state)
{
    (void)state;
    struct hs_config cfg;
    char err[2048];
    const struct {
        const char *args[10];
        const char *says;
    } cases[] = {
        {{"--interval", "1,,2", NULL}, "--interval: empty item in 1,,2"},
        {{"--interval", ",5", NULL}, "empty item"},
        {{"--device-list", "a,b,a", NULL}, "device id a is listed twice"},
        {{"--device-list", "x; y ;x", NULL}, "device id x is listed twice"},
        {{"--sas-ttl", "0", NULL}, "--sas-ttl: 0: at least 10 s"},
        {{"--sas-ttl", "9s", NULL}, "at least 10 s"},
        {{"--protocol", "amqp", "--amqp-address", "", NULL},
         "--amqp-address: must not be empty"},
        {{"--qos", "0", "--max-p99", "50", NULL}, "--max-p99: needs --qos 1"},
        {{"--prefix", "sim~", NULL}, "only ASCII letters, digits"},
        {{"--prefix", "caf\xC3\xA9", NULL}, "only ASCII letters, digits"},
        {{"--device-list", "a,\xFF", NULL}, "only ASCII letters, digits"},
        {{"--device-list", "a<b", NULL}, "only ASCII letters, digits"},
        {{"--connect-to", "127.0.0.1:8883", "--bind", "::1", NULL},
         "--bind: an IPv6 address for an IPv4 --connect-to"},
        {{"--connect-to", "[::1]:8883", "--bind", "127.0.0.2,::1", NULL},
         "--bind: an IPv4 address for an IPv6 --connect-to"},
        {{"--variables", "[{\"name\": \"C\", \"step\": 0}]", NULL},
         "--variables: counter C: step must not be 0"},
    };
    const char *env[] = {"IotHubConnectionString=" HUB_CS, NULL};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum hs_opts_rc rc =
            parse_err(&cfg, env, cases[i].args, err, sizeof(err));
        if (rc != HS_OPTS_ERROR || strstr(err, cases[i].says) == NULL) {
            fprintf(stderr, "case %zu (%s %s): rc %d, said: %s\n", i,
                    cases[i].args[0], cases[i].args[1], rc, err);
            fail();
        }
    }
    /* A duplicate in the environment's list or the File's, too. */
    const char *dup_env[] = {"IotHubConnectionString=" HUB_CS,
                             "DeviceList=d1,d2,d1", NULL};
    assert_int_equal(parse_err(&cfg, dup_env, NULL, err, sizeof(err)),
                     HS_OPTS_ERROR);
    assert_non_null(strstr(err, "DeviceList: device id d1 is listed twice"));
    const char *path = tmp_file("{\"DeviceList\": \"f1;f1\"}");
    const char *file_args[] = {"--file", path, NULL};
    assert_int_equal(parse_err(&cfg, env, file_args, err, sizeof(err)),
                     HS_OPTS_ERROR);
    assert_non_null(strstr(err, "device id f1 is listed twice"));
    unlink(path);
}

/* Their neighbours that are fine stay accepted. */
static void test_accepted_values(void **state)
{
    (void)state;
    struct hs_config cfg;
    char err[2048];
    const char *env[] = {"IotHubConnectionString=" HUB_CS, NULL};
    const char *args[] = {"--interval",
                          "100,200;",
                          "--device-list",
                          "a-._%*?!():=@$'z,B9",
                          "--sas-ttl",
                          "10s",
                          "--duration",
                          "0",
                          "--connect-to",
                          "127.0.0.1:8883",
                          "--bind",
                          "127.0.0.2",
                          NULL};
    assert_int_equal(parse_err(&cfg, env, args, err, sizeof(err)), HS_OPTS_RUN);
    assert_string_equal(err, "");
    assert_int_equal(cfg.nintervals, 2);
    assert_int_equal(cfg.intervals[1], 200);
    assert_int_equal(cfg.ndevices, 2);
    assert_string_equal(cfg.device_ids[0], "a-._%*?!():=@$'z");
    assert_int_equal(cfg.sas_ttl_s, 10);
    assert_int_equal(cfg.duration_ms, 0); /* no limit */
    hs_config_free(&cfg);
    const char *prefix[] = {"--prefix", "x,y-", NULL};
    assert_int_equal(parse(&cfg, env, prefix), HS_OPTS_RUN);
    assert_string_equal(cfg.device_ids[0], "x,y-000001");
    hs_config_free(&cfg);
}

/* Settings that are accepted with a warning saying what happens. */
static void test_warned_values(void **state)
{
    (void)state;
    struct hs_config cfg;
    char err[2048];
    const char *empty[] = {"IotHubConnectionString=" HUB_CS,
                           "DeviceCount=", NULL};
    assert_int_equal(parse_err(&cfg, empty, NULL, err, sizeof(err)),
                     HS_OPTS_RUN);
    assert_non_null(strstr(err, "warning: DeviceCount is empty in the "
                                "environment; ignored"));
    assert_int_equal(cfg.ndevices, 1);
    hs_config_free(&cfg);
    /* Not when a flag gives it. */
    const char *devices[] = {"--devices", "2", NULL};
    assert_int_equal(parse_err(&cfg, empty, devices, err, sizeof(err)),
                     HS_OPTS_RUN);
    assert_string_equal(err, "");
    hs_config_free(&cfg);

    const char *twice[] = {"IotHubConnectionString=" HUB_CS, "DeviceCount=2",
                           "DEVICECOUNT=3", NULL};
    assert_int_equal(parse_err(&cfg, twice, NULL, err, sizeof(err)),
                     HS_OPTS_RUN);
    assert_non_null(strstr(err, "warning: DeviceCount and DEVICECOUNT are the "
                                "same setting; the last, DEVICECOUNT=3, wins"));
    assert_int_equal(cfg.ndevices, 3);
    hs_config_free(&cfg);

    const char *both[] = {"IotHubConnectionString=" HUB_CS, "Interval=100",
                          "Intervals=300", NULL};
    assert_int_equal(parse_err(&cfg, both, NULL, err, sizeof(err)),
                     HS_OPTS_RUN);
    assert_non_null(strstr(err, "warning: Interval and Intervals both set; "
                                "Intervals wins"));
    assert_int_equal(cfg.intervals[0], 300);
    hs_config_free(&cfg);

    const char *env[] = {"IotHubConnectionString=" HUB_CS, NULL};
    const char *amqp_only[] = {"--amqp-user", "u", "--devices-per-connection",
                               "5", NULL};
    assert_int_equal(parse_err(&cfg, env, amqp_only, err, sizeof(err)),
                     HS_OPTS_RUN);
    assert_non_null(strstr(err, "warning: --amqp-user is only used over AMQP"));
    assert_non_null(strstr(err, "warning: --devices-per-connection is only "
                                "used over AMQP (--protocol amqp or amqp-ws); "
                                "ignored over mqtt"));
    hs_config_free(&cfg);
    const char *amqp[] = {"--protocol", "amqp", "--amqp-user", "u", NULL};
    assert_int_equal(parse_err(&cfg, env, amqp, err, sizeof(err)), HS_OPTS_RUN);
    assert_string_equal(err, "");
    hs_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance_and_suggest),
        cmocka_unit_test(test_simulator_defaults),
        cmocka_unit_test(test_env_any_case_and_lists),
        cmocka_unit_test(test_flags_win),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_amqp),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_storms_resend_x509),
        cmocka_unit_test(test_payload_settings),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_refused_values),
        cmocka_unit_test(test_accepted_values),
        cmocka_unit_test(test_warned_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
