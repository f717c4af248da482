/* An LD_PRELOAD shim that logs every name a process asks the resolver for, then resolves it
 * as usual: one line "<pid> <function> <name> <seconds since the epoch>" per lookup, appended to
 * the file named by DNSLOG_FILE. Built by tests/e2e/test_egress_names.py with `cc`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void note(const char *fn, const char *name) {
    const char *path = getenv("DNSLOG_FILE");
    if (path == NULL) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[1200];
    int n = snprintf(line, sizeof line, "%d %s %.512s %ld.%03ld\n", (int)getpid(), fn, name ? name : "(null)",
                     (long)ts.tv_sec, ts.tv_nsec / 1000000);
    if (n > 0) {
        if (n >= (int)sizeof line) n = (int)sizeof line - 1;
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
    }
    close(fd);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (real == NULL) real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    note("getaddrinfo", node);
    return real(node, service, hints, res);
}

struct hostent *gethostbyname(const char *name) {
    static struct hostent *(*real)(const char *);
    if (real == NULL) real = (struct hostent * (*)(const char *)) dlsym(RTLD_NEXT, "gethostbyname");
    note("gethostbyname", name);
    return real(name);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,
                    int *h_errnop) {
    static int (*real)(const char *, struct hostent *, char *, size_t, struct hostent **, int *);
    if (real == NULL)
        real = (int (*)(const char *, struct hostent *, char *, size_t, struct hostent **, int *))dlsym(
            RTLD_NEXT, "gethostbyname_r");
    note("gethostbyname_r", name);
    return real(name, ret, buf, buflen, result, h_errnop);
}
