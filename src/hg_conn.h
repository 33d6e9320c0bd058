/*
 * hg_conn: a client connection's life, from accept to close. The entry
 * points are declared in hg_worker.h, which owns the connections.
 */
#ifndef HG_CONN_H
#define HG_CONN_H

#include "hg_worker.h"

#endif
