/*
 * hubgate: forwards device TLS connections, untouched, from one static
 * address to backends chosen by SNI and reached by DNS name.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "hg_daemon.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: hubgate -c FILE        run in the foreground\n"
                 "       hubgate -t -c FILE     check FILE and exit\n"
                 "       hubgate --version\n"
                 "\n"
                 "Signals: SIGHUP reloads FILE; SIGTERM or SIGINT stop.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int check = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'V':
            printf("hubgate %s\n", HG_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    return check ? hg_daemon_check(path) : hg_daemon_run(path);
}
