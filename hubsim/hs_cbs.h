/*
 * hs_cbs: the messages of AMQP claims-based security as IoT Hub speaks it.
 * A device proves itself on a shared connection by sending its SAS token to
 * the $cbs node in a put-token request; the hub answers on the $cbs
 * receiver with a status code (200 or 202 accepted) whose correlation id is
 * the request's message id.
 *
 * Messages are built and read with proton's pn_message; what is checked
 * here is the part proton leaves to the application: the request's fields
 * and the answer's status, which comes from the peer and may be anything.
 */
#ifndef HS_CBS_H
#define HS_CBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proton/message.h>

#define HS_CBS_NODE       "$cbs"
#define HS_CBS_REPLY_TO   "cbs"
#define HS_CBS_TOKEN_TYPE "azure-devices.net:sastoken"

enum hs_cbs_rc {
    HS_CBS_OK,       /* a well-formed answer: see status */
    HS_CBS_DECLINED, /* not an answer to a put-token request */
    HS_CBS_ERROR,    /* not even an AMQP message */
};

struct hs_cbs_reply {
    uint64_t id; /* the request's message id it answers */
    int status;  /* HTTP-like: 200 and 202 accept */
    char description[128];
};

/*
 * Fills m (cleared first) with the put-token request number id for device
 * device_id of hub: operation put-token, the SAS token type, the name
 * "{hub}/devices/{device_id}" and the token as the body. Returns 0, or -1
 * when proton runs out of memory or the name is too long.
 */
int hs_cbs_request(pn_message_t *m, const char *hub, const char *device_id,
                   const char *token, uint64_t id);

/*
 * Reads an answer: the correlation id (an unsigned integer, as the request
 * sent) and application properties status-code (any integer type) and
 * status-description (optional). DECLINED when either of the first two is
 * missing or of another type; why says what.
 */
enum hs_cbs_rc hs_cbs_reply_read(pn_message_t *m, struct hs_cbs_reply *r,
                                 const char **why);

/*
 * Decodes bytes as one AMQP message into m, then reads it as above. ERROR
 * when proton cannot decode it.
 */
enum hs_cbs_rc hs_cbs_reply_decode(pn_message_t *m, const char *bytes,
                                   size_t len, struct hs_cbs_reply *r,
                                   const char **why);

/* True for the statuses that accept a token. */
bool hs_cbs_accepted(int status);

#endif
