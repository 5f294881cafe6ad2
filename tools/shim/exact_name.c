/*
 * Linked into coreutils.wasm only (see build.sh).
 *
 * The coreutils multicall binary picks the utility whose name is the longest
 * suffix of argv[0], so `chmod` (not built for WASI) would run `od`. This
 * constructor runs before main and lets through only argv[0] names that are
 * exactly a utility the binary provides, or `coreutils` itself (which takes
 * the utility as its first argument); anything else exits 127 with a message.
 * The names come from tools/coreutils.names via a header build.sh generates
 * (WES_NAMES_HEADER), with the same "file stem of argv[0]" rule upstream uses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static const char *const names[] = {
#include WES_NAMES_HEADER
    NULL,
};

__attribute__((constructor)) static void wes_exact_name(void) {
    __wasi_size_t argc = 0, size = 0;
    if (__wasi_args_sizes_get(&argc, &size) != 0 || argc == 0) {
        return;
    }
    char **argv = calloc(argc + 1, sizeof(char *));
    char *buf = malloc(size);
    if (argv == NULL || buf == NULL || __wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0) {
        free(argv);
        free(buf);
        return;
    }
    /* Upstream matches on Path::file_stem(argv[0]): drop the directory and
     * the last extension (`/bin/cat.wasm` -> `cat`). */
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    size_t len = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base) {
        len = (size_t)(dot - base);
    }
    int ok = len == strlen("coreutils") && strncmp(base, "coreutils", len) == 0;
    for (const char *const *n = names; !ok && *n != NULL; n++) {
        ok = strlen(*n) == len && strncmp(base, *n, len) == 0;
    }
    if (!ok) {
        static const char msg[] = ": not a utility of coreutils.wasm\n";
        (void)write(2, base, len);
        (void)write(2, msg, sizeof msg - 1);
        _Exit(127);
    }
    free(argv);
    free(buf);
}
