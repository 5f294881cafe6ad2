/*
 * Linked into every bundled tool (`-C link-arg=chdir_pwd.o`, see build.sh).
 *
 * A WASI command starts with its current directory at `/`, and Rust's std
 * never looks at $PWD. The server passes the command's working directory in
 * PWD, so this constructor, which wasi-libc runs from `_start` before main,
 * changes into it. wasi-libc emulates the current directory in the guest, and
 * Rust's std resolves relative paths through it, so `cat a.txt` run with
 * PWD=/w/sub opens /w/sub/a.txt. A missing or relative PWD, or one that is
 * not a directory the guest can reach, leaves the directory at `/`.
 */
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void wes_chdir_to_pwd(void) {
    const char *pwd = getenv("PWD");
    if (pwd != NULL && pwd[0] == '/') {
        (void)chdir(pwd);
    }
}
