/*
 * cnisdk-shim: the compiled agent-mode launcher of cnisdk.
 *
 * A container runtime execs this file as a CNI plugin. It forwards the request (environment
 * and stdin) to `cnisdk agent` over a Unix socket (protocol version 2, see cnisdk/_agent_protocol.py),
 * prints the agent's stdout and stderr bytes and exits with its code. It behaves exactly as
 * the Python shim (cnisdk/_launcher.py) does, message for message: same timeouts, same
 * fallback rules, same error documents.
 *
 * Configuration: `cnisdk install` writes one copy of this binary per plugin type with a
 * trailer appended: KEY=VALUE entries, each ended by a NUL byte, then the entries' length
 * as 4 bytes big-endian, then the 8 bytes "CNISHIM1". The shim reads it from
 * /proc/self/exe, so nothing is compiled on a node. Keys: type, socket, fallback ("exec" or
 * "fail"), python and exec (the exec-mode fallback: python -I -c EXEC), header (the request
 * header without its closing brace), connect_timeout_ms, answer_timeout_ms, max_head and
 * max_frame (the largest answer frames accepted).
 *
 * Build: cc -static -Os -o cnisdk-shim _shim.c (C99, libc only; `cnisdk build-shim`).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Names the protocol; `cnisdk install` checks for it before copying a binary. */
#define IDENT "cnisdk-shim protocol 2"
#define MAGIC "CNISHIM1"
#define MAGIC_LEN 8
#define MAX_CONFIG (64 * 1024)
#define TIMED_OUT (-2)
#define END_OF_STREAM (-3)
#define MALFORMED (-4)

struct buf {
    char *data;
    size_t len, cap;
};

static struct {
    const char *socket, *fallback, *python, *exec, *header;
    long connect_ms, answer_ms;
    unsigned long max_head, max_frame;
} cfg;

static int is_add;

/* ---- output ---------------------------------------------------------------------------- */

static void put(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void out_of_memory(void) {
    static const char text[] = "{\n    \"code\": 11,\n    \"msg\": \"cnisdk shim: out of memory\"\n}";
    put(1, text, sizeof text - 1);
    _exit(1);
}

static void add(struct buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) {
            if (cap > SIZE_MAX / 2)
                out_of_memory();
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (data == NULL)
            out_of_memory();
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void add_str(struct buf *b, const char *s) { add(b, s, strlen(s)); }

static void add_num(struct buf *b, unsigned long n) {
    char digits[24];
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    add(b, digits + i, sizeof digits - i);
}

/* The length of the valid UTF-8 sequence at s (Go's utf8.DecodeRune rules), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *rune) {
    unsigned char c = s[0];
    size_t size;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        size = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        size = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        size = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (n < size || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < size; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    uint32_t r = c & (0xFF >> (size + 1));
    for (size_t i = 1; i < size; i++)
        r = (r << 6) | (s[i] & 0x3F);
    *rune = r;
    return size;
}

/* A JSON string's contents as Go's encoder writes them: HTML-safe, invalid UTF-8 as \ufffd. */
static void add_go_string(struct buf *out, const char *text, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            const char *esc = NULL;
            switch (c) {
            case '"': esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default: break;
            }
            if (esc != NULL) {
                add_str(out, esc);
            } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
                add(out, u, sizeof u);
            } else {
                add(out, &c, 1);
            }
            i++;
            continue;
        }
        uint32_t rune = 0;
        size_t size = utf8_len(s + i, n - i, &rune);
        if (size == 0) {
            add_str(out, "\\ufffd");
            i++;
        } else {
            if (rune == 0x2028)
                add_str(out, "\\u2028");
            else if (rune == 0x2029)
                add_str(out, "\\u2029");
            else
                add(out, s + i, size);
            i += size;
        }
    }
}

/* What Go's skel prints for an error: 4-space indented JSON, no trailing newline. */
static void fail_code(const struct buf *msg, unsigned long code) {
    struct buf doc = {0};
    add_str(&doc, "{\n    \"code\": ");
    add_num(&doc, code);
    add_str(&doc, ",\n    \"msg\": \"");
    add_go_string(&doc, msg->data ? msg->data : "", msg->len);
    add_str(&doc, "\"\n}");
    put(1, doc.data, doc.len);
    _exit(1);
}

static void fail(const struct buf *msg) { fail_code(msg, 11); }

static void add_error(struct buf *b, int err) {
    if (err == TIMED_OUT)
        add_str(b, "timed out");
    else
        add_str(b, strerror(err));
}

/* ---- configuration --------------------------------------------------------------------- */

static ssize_t pread_all(int fd, char *p, size_t n, off_t at) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, at + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static int load_config(void) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    char foot[4 + MAGIC_LEN];
    char *data = NULL;
    int ok = fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof foot &&
             pread_all(fd, foot, sizeof foot, st.st_size - (off_t)sizeof foot) >= 0 &&
             memcmp(foot + 4, MAGIC, MAGIC_LEN) == 0;
    uint32_t size = 0;
    if (ok) {
        const unsigned char *u = (const unsigned char *)foot;
        size = (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
        ok = size <= MAX_CONFIG && (off_t)size <= st.st_size - (off_t)sizeof foot &&
             (data = malloc(size + 1)) != NULL &&
             pread_all(fd, data, size, st.st_size - (off_t)sizeof foot - size) >= 0;
    }
    close(fd);
    if (!ok)
        return -1;
    data[size] = '\0';
    for (char *p = data; p < data + size; p += strlen(p) + 1) {
        char *value = strchr(p, '=');
        if (value == NULL)
            continue;
        *value++ = '\0';
        if (strcmp(p, "socket") == 0)
            cfg.socket = value;
        else if (strcmp(p, "fallback") == 0)
            cfg.fallback = value;
        else if (strcmp(p, "python") == 0)
            cfg.python = value;
        else if (strcmp(p, "exec") == 0)
            cfg.exec = value;
        else if (strcmp(p, "header") == 0)
            cfg.header = value;
        else if (strcmp(p, "connect_timeout_ms") == 0)
            cfg.connect_ms = strtol(value, NULL, 10);
        else if (strcmp(p, "answer_timeout_ms") == 0)
            cfg.answer_ms = strtol(value, NULL, 10);
        else if (strcmp(p, "max_head") == 0)
            cfg.max_head = strtoul(value, NULL, 10);
        else if (strcmp(p, "max_frame") == 0)
            cfg.max_frame = strtoul(value, NULL, 10);
    }
    return cfg.socket && cfg.fallback && cfg.python && cfg.exec && cfg.header &&
                   cfg.connect_ms > 0 && cfg.answer_ms > 0 && cfg.max_head > 0 && cfg.max_frame > 0
               ? 0
               : -1;
}

/* ---- the exec-mode fallback ------------------------------------------------------------ */

static void unavailable_prefix(struct buf *msg, const struct buf *why, int detailed) {
    add_str(msg, "cnisdk agent unavailable at ");
    add_str(msg, cfg.socket);
    add_str(msg, detailed ? " (" : ": ");
    add(msg, why->data, why->len);
    if (detailed)
        add_str(msg, ")");
}

static void fallback(const struct buf *stdin_data, const struct buf *why) {
    struct buf msg = {0};
    if (strcmp(cfg.fallback, "exec") != 0) {
        unavailable_prefix(&msg, why, 0);
        fail(&msg);
    }
    if (stdin_data != NULL) {
        /* The request's stdin was consumed: hand the exec-mode plugin a copy on fd 0. */
        int fd = memfd_create("cnisdk-stdin", MFD_CLOEXEC);
        size_t done = 0;
        int err = fd < 0 ? errno : 0;
        while (!err && done < stdin_data->len) {
            ssize_t w = write(fd, stdin_data->data + done, stdin_data->len - done);
            if (w < 0 && errno != EINTR)
                err = errno;
            else if (w > 0)
                done += (size_t)w;
        }
        if (!err && (lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0))
            err = errno;
        if (err) {
            unavailable_prefix(&msg, why, 1);
            add_str(&msg, "; stdin: ");
            add_error(&msg, err);
            fail(&msg);
        }
        close(fd);
    }
    char *argv[] = {(char *)cfg.python, "-I", "-c", (char *)cfg.exec, NULL};
    execv(cfg.python, argv);
    int err = errno;
    unavailable_prefix(&msg, why, 1);
    add_str(&msg, "; exec mode: ");
    add_error(&msg, err);
    fail(&msg);
}

/* ---- the connection -------------------------------------------------------------------- */

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 0 when fd is ready for events before deadline, else TIMED_OUT or an errno value. */
static int wait_for(int fd, short events, long deadline) {
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0)
            return TIMED_OUT;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return errno;
    }
}

static int send_all(int fd, const char *p, size_t n, long deadline) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (errno == EAGAIN) {
            int err = wait_for(fd, POLLOUT, deadline);
            if (err)
                return err;
        } else if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

static int receive(int fd, char *p, size_t n, long deadline) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r == 0) {
            return END_OF_STREAM;
        } else if (errno == EAGAIN) {
            int err = wait_for(fd, POLLIN, deadline);
            if (err)
                return err;
        } else if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

/* One answer frame of at most limit bytes into out (replacing what it held). */
static int receive_frame(int fd, struct buf *out, unsigned long limit, long deadline) {
    unsigned char prefix[4];
    int err = receive(fd, (char *)prefix, sizeof prefix, deadline);
    if (err)
        return err;
    uint32_t size = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 |
                    (uint32_t)prefix[2] << 8 | prefix[3];
    if (size > limit)
        return MALFORMED;
    if (out->cap < (size_t)size + 1) {
        char *data = realloc(out->data, (size_t)size + 1);
        if (data == NULL)
            out_of_memory();
        out->data = data;
        out->cap = (size_t)size + 1;
    }
    out->len = 0;
    out->data[0] = '\0';
    err = receive(fd, out->data, size, deadline);
    if (err)
        return err;
    out->len = size;
    out->data[size] = '\0';
    return 0;
}

/* An answer header "STATUS REST" (REST may be absent). */
struct head {
    const char *status, *rest;
    size_t status_len, rest_len;
};

static struct head split_head(const struct buf *h) {
    struct head r = {h->data, "", h->len, 0};
    const char *space = memchr(h->data, ' ', h->len);
    if (space != NULL) {
        r.status_len = (size_t)(space - h->data);
        r.rest = space + 1;
        r.rest_len = h->len - r.status_len - 1;
    }
    return r;
}

static int status_is(const struct head *h, const char *word) {
    return h->status_len == strlen(word) && memcmp(h->status, word, h->status_len) == 0;
}

/* The agent answered that the request did not run. */
static int not_run(const struct head *h) {
    return status_is(h, "unserved") || status_is(h, "bad-request") || status_is(h, "refused");
}

static void add_not_run(struct buf *why, const struct head *h) {
    why->len = 0;
    add(why, h->status, h->status_len);
    add_str(why, ": ");
    add(why, h->rest, h->rest_len);
}

static void add_frame(struct buf *b, const char *p, size_t n) {
    unsigned char prefix[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                               (unsigned char)(n >> 8), (unsigned char)n};
    add(b, prefix, sizeof prefix);
    add(b, p, n);
}

int main(void) {
    struct buf msg = {0};
    if (load_config() != 0) {
        add_str(&msg, IDENT ": no configuration in /proc/self/exe (per-plugin copies are "
                            "written by `cnisdk install --agent-socket`)");
        fail_code(&msg, 999);
    }
    const char *command = getenv("CNI_COMMAND");
    if (command == NULL)
        command = "";
    is_add = strcmp(command, "ADD") == 0;

    /* Exec mode reads no stdin for VERSION or without a command; nor does the shim, so a
       terminal never blocks it. A failed read is the agent's to answer, as exec mode would. */
    struct buf stdin_data = {0};
    int have_stdin = 0, stdin_errno = 0;
    add(&stdin_data, "", 0);
    if (command[0] != '\0' && strcmp(command, "VERSION") != 0) {
        have_stdin = 1;
        char chunk[65536];
        for (;;) {
            ssize_t r = read(0, chunk, sizeof chunk);
            if (r > 0) {
                add(&stdin_data, chunk, (size_t)r);
            } else if (r == 0) {
                break;
            } else if (errno != EINTR) {
                stdin_errno = errno ? errno : EIO;
                have_stdin = 0;
                stdin_data.len = 0;
                break;
            }
        }
    }

    struct buf header = {0}, env = {0}, request = {0};
    add_str(&header, cfg.header);
    if (stdin_errno) {
        add_str(&header, ",\"stdin_errno\":");
        add_num(&header, (unsigned long)stdin_errno);
    }
    add_str(&header, "}");
    for (char **e = environ; *e != NULL; e++)
        add(&env, *e, strlen(*e) + 1);
    add_frame(&request, header.data, header.len);
    add_frame(&request, env.data ? env.data : "", env.len);
    add_frame(&request, stdin_data.data, stdin_data.len);
    const struct buf *keep = have_stdin ? &stdin_data : NULL;

    struct buf why = {0}, head = {0}, out = {0}, err_out = {0};
    long deadline = now_ms() + cfg.connect_ms;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        add_str(&why, "connect: ");
        add_error(&why, errno);
        fallback(keep, &why);
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t path_len = strlen(cfg.socket);
    if (path_len >= sizeof addr.sun_path) {
        add_str(&why, "connect: ");
        add_error(&why, ENAMETOOLONG);
        fallback(keep, &why);
    }
    memcpy(addr.sun_path, cfg.socket, path_len);
    int err = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        err = errno;
        if (err == EINPROGRESS || err == EINTR) {
            socklen_t len = sizeof err;
            err = wait_for(fd, POLLOUT, deadline);
            if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
        }
    }
    if (err) {
        add_str(&why, "connect: ");
        add_error(&why, err);
        fallback(keep, &why);
    }
    err = send_all(fd, request.data, request.len, deadline);
    if (err) {
        /* A request only runs once the agent has read all of it: it did not run. An agent
           that refused the connection may have said why before closing. */
        add_str(&why, "send: ");
        add_error(&why, err);
        if (receive_frame(fd, &head, cfg.max_head, now_ms() + 1000) == 0) {
            struct head h = split_head(&head);
            if (not_run(&h))
                add_not_run(&why, &h);
        }
        fallback(keep, &why);
    }

    deadline = now_ms() + cfg.answer_ms;
    int exit_code = 0;
    struct head h = {"", "", 0, 0};
    err = receive_frame(fd, &head, cfg.max_head, deadline);
    if (!err) {
        h = split_head(&head);
        if (status_is(&h, "ok")) {
            if (h.rest_len < 1 || h.rest_len > 3)
                err = MALFORMED;
            for (size_t i = 0; !err && i < h.rest_len; i++) {
                if (h.rest[i] < '0' || h.rest[i] > '9')
                    err = MALFORMED;
                else
                    exit_code = exit_code * 10 + (h.rest[i] - '0');
            }
            if (!err && exit_code > 255)
                err = MALFORMED;
            if (!err)
                err = receive_frame(fd, &out, cfg.max_frame, deadline);
            if (!err)
                err = receive_frame(fd, &err_out, cfg.max_frame, deadline);
        } else if (!not_run(&h)) {
            err = MALFORMED;
        }
    }
    if (err) {
        if (err == TIMED_OUT) {
            add_str(&why, "no answer within ");
            add_num(&why, (unsigned long)(cfg.answer_ms / 1000));
            add_str(&why, " s");
        } else if (err == END_OF_STREAM) {
            add_str(&why, "the agent closed the connection before a complete answer");
        } else if (err == MALFORMED) {
            add_str(&why, "malformed answer");
        } else {
            add_str(&why, "read: ");
            add_error(&why, err);
        }
        /* The agent may have run part of the request: see cnisdk/_launcher.py. */
        if (is_add) {
            add_str(&msg, "cnisdk agent at ");
            add_str(&msg, cfg.socket);
            add_str(&msg, " failed during ADD (");
            add(&msg, why.data, why.len);
            add_str(&msg, "); the ADD may be partly applied and was not retried");
            fail(&msg);
        }
        fallback(keep, &why);
    }
    if (!status_is(&h, "ok")) {
        /* "unserved", "bad-request", "refused": the request did not run. */
        add_not_run(&why, &h);
        fallback(keep, &why);
    }
    put(2, err_out.data ? err_out.data : "", err_out.len);
    put(1, out.data ? out.data : "", out.len);
    _exit(exit_code);
}
