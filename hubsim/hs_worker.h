/*
 * hs_worker: one thread, one event loop, a share of the devices. Workers
 * start their devices at the configured ramp, watch the run's phase, and
 * end when every device has finished. The run (struct hs_run) is shared
 * and read-only but for its phase, which the main thread moves forward:
 * RUN, then DRAIN (stop sending, wait for the last PUBACKs), then STOP
 * (close everything now).
 */
#ifndef HS_WORKER_H
#define HS_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "hg_loop.h"

#include "hs_opts.h"
#include "hs_stats.h"
#include "hs_tls.h"

#define HS_WBUF_SIZE (HS_PAYLOAD_MAX + 4096) /* one outgoing packet */
#define HS_RBUF_SIZE (16 * 1024)             /* one TLS record */

enum hs_phase {
    HS_PHASE_RUN,
    HS_PHASE_DRAIN,
    HS_PHASE_STOP,
};

struct hs_run {
    const struct hs_config *cfg;
    SSL_CTX *tls;
    struct hs_tls_id *ids;        /* --cert-dir: each device's, by index */
    struct sockaddr_storage addr; /* where every device connects */
    socklen_t addr_len;
    char machine_name[256];
    atomic_int phase; /* enum hs_phase */
};

struct hs_device;
struct hs_amqp_conn;
struct pn_message_t;

struct hs_worker {
    unsigned id;
    pthread_t thread;
    struct hs_run *run;
    struct hg_loop loop;
    struct hs_device *devices;
    uint32_t ndevices;
    uint32_t started;  /* devices the ramp has started */
    uint32_t finished; /* devices that reached DONE */
    double ramp;       /* this worker's share, devices per second */
    uint64_t t0;       /* loop time the ramp began */
    int phase_seen;
    size_t storms_done; /* --storm-at entries passed */
    struct hg_timer tick;
    struct hs_stats stats;
    uint64_t rng;
    uint8_t *wbuf;              /* builds one outgoing packet */
    uint8_t *pbuf;              /* one payload */
    uint8_t *rbuf;              /* one read */
    struct hs_amqp_conn *conns; /* AMQP: one per group of devices */
    uint32_t nconns;
    struct pn_message_t *msg; /* AMQP: builds and reads one message */
    atomic_bool done;
};

/*
 * Makes worker id of n for run, with the devices whose index modulo n is
 * id. Returns 0 or -errno.
 */
int hs_worker_init(struct hs_worker *w, struct hs_run *run, unsigned id,
                   unsigned n);
void hs_worker_deinit(struct hs_worker *w);

/* Starts the thread. Returns 0 or an errno value. */
int hs_worker_start(struct hs_worker *w);

/* Called by a device when it reaches DONE. */
void hs_worker_device_done(struct hs_worker *w);

#endif
