/*
 * Linked into C tools that call what WASI does not have (see build.sh,
 * CSOURCE): no shell to run a command, no permission bits to set. Each
 * fails the way POSIX allows, so the tool reports it instead of the module
 * failing to link.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

/* system(NULL) asks whether a shell exists: none does. */
int system(const char *command) {
    if (command == NULL) {
        return 0;
    }
    errno = ENOSYS;
    return -1;
}

int chmod(const char *path, mode_t mode) {
    (void)path;
    (void)mode;
    errno = ENOTSUP;
    return -1;
}
