//! The second wall: what the operating system enforces on a tenant's worker
//! process, whatever our own path checks get wrong.
//!
//! - **Landlock** ([`landlock`]): from the moment the worker has loaded its
//!   modules and opened its workspace, it may open files only beneath its
//!   tenant's root and its scratch directory (the guests' `/tmp`), may make
//!   no TCP connection and bind no port, and may signal no process outside
//!   itself. Every other path on the host is refused by the kernel: a
//!   symlink a guest made that leads out, followed by git, resolves to a
//!   path the worker may not open.
//! - **seccomp** ([`seccomp`]): no new sockets, no `execve`, no ptrace,
//!   mount, namespaces, bpf, keyrings, userfaultfd, perf, io_uring, module
//!   or kexec calls. The filter denies a list (with `EPERM`) rather than
//!   allowing one: the worker runs tokio, wasmtime and cranelift's code, whose
//!   exact syscalls move from release to release, and a missing entry in an
//!   allow-list kills a tenant; what it denies is everything a process that
//!   serves connections handed to it never needs.
//! - **Limits** ([`limits`]): `no_new_privs`, no core dumps, not dumpable
//!   (no other process of the same user may ptrace it), a bound on open
//!   files.
//!
//! The crates: `landlock` is the Landlock maintainers' own, and picks the
//! newest ABI the kernel offers; `seccompiler` (from Firecracker) compiles
//! the filter to BPF in pure Rust, with no libseccomp to install; `rustix`
//! makes the prctl and rlimit calls without `unsafe`.

use std::path::Path;

/// How far the worker is confined, for the log and for `required`.
#[derive(Debug, Default)]
pub struct Status {
    /// Landlock fully enforced, partly (an older kernel lacks some rights),
    /// or not at all, with the ABI the kernel offers.
    pub landlock: String,
    pub landlock_full: bool,
    pub seccomp: bool,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seccomp = if self.seccomp { "seccomp filter on" } else { "no seccomp filter" };
        write!(f, "Landlock {}, {seccomp}", self.landlock)
    }
}

/// What the kernel offers, checked by the front before any worker starts:
/// the Landlock ABI version (`None`: no Landlock) and whether seccomp
/// filters can be installed.
#[cfg(target_os = "linux")]
pub fn kernel_support() -> (Option<i32>, bool) {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns the ABI version; prctl(PR_GET_SECCOMP) only reads the
    // calling thread's mode. Neither takes a pointer the kernel writes to.
    #[allow(unsafe_code)]
    let (abi, seccomp) = unsafe {
        (
            libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32),
            libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0),
        )
    };
    ((abi > 0).then_some(abi as i32), seccomp >= 0)
}

#[cfg(not(target_os = "linux"))]
pub fn kernel_support() -> (Option<i32>, bool) {
    (None, false)
}

/// Restricts the calling thread, and every thread it starts afterwards, to
/// reading and writing beneath `rw` (Landlock applies to the thread that
/// asks and its descendants: call this before the async runtime starts).
#[cfg(target_os = "linux")]
pub fn landlock(rw: &[&Path], status: &mut Status) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        Scope, path_beneath_rules,
    };
    let abi = ABI::V6;
    let created = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .map_err(|e| format!("cannot create a Landlock ruleset: {e}"))?;
    for dir in rw {
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
    }
    let restricted = created
        .add_rules(path_beneath_rules(rw, AccessFs::from_all(abi)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("cannot apply Landlock rules: {e}"))?;
    let (abi_now, _) = kernel_support();
    let abi_text = abi_now.map(|v| format!(" (kernel ABI {v})")).unwrap_or_default();
    (status.landlock, status.landlock_full) = match restricted.ruleset {
        RulesetStatus::FullyEnforced => (format!("fully enforced{abi_text}"), true),
        RulesetStatus::PartiallyEnforced => (format!("partly enforced{abi_text}"), false),
        RulesetStatus::NotEnforced => ("not available in this kernel".into(), false),
    };
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn landlock(_rw: &[&Path], status: &mut Status) -> Result<(), String> {
    status.landlock = "not available on this system".into();
    Ok(())
}

/// Installs the seccomp filters on every thread of the process.
#[cfg(target_os = "linux")]
pub fn seccomp(status: &mut Status) -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, apply_filter_all_threads,
    };
    use std::collections::BTreeMap;
    let arch: seccompiler::TargetArch =
        std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: {e}"))?;
    let denied = [
        // No new network sockets: the worker serves only descriptors
        // handed to it, and its control socket.
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        // No programs.
        libc::SYS_execve,
        libc::SYS_execveat,
        // No other process's memory, no debugging.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        // No mounts, namespaces or root changes.
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        // Kernel attack surface a server never needs.
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_perf_event_open,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_fanotify_init,
        libc::SYS_personality,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_vhangup,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied.iter().map(|&nr| (nr, Vec::new())).collect();
    // `clone` may make threads, not namespaces.
    let namespaces = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let clone_rules = namespaces
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
                .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("seccomp: {e}"))?;
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    // clone3 passes its flags in memory, out of a filter's reach: it answers
    // "not implemented", and the C library falls back to clone (above).
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    for filter in [deny, clone3] {
        let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e}"))?;
        apply_filter_all_threads(&program).map_err(|e| format!("cannot install seccomp: {e}"))?;
    }
    status.seccomp = true;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn seccomp(_status: &mut Status) -> Result<(), String> {
    Ok(())
}

/// Process limits: no new privileges, no core dumps, not dumpable, at most
/// `open_files` descriptors.
pub fn limits(open_files: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let zero = Rlimit { current: Some(0), maximum: Some(0) };
    setrlimit(Resource::Core, zero).map_err(|e| format!("cannot turn core dumps off: {e}"))?;
    let hard = getrlimit(Resource::Nofile).maximum;
    let n = hard.map_or(open_files, |h| h.min(open_files));
    setrlimit(Resource::Nofile, Rlimit { current: Some(n), maximum: Some(n) })
        .map_err(|e| format!("cannot limit open files: {e}"))?;
    #[cfg(target_os = "linux")]
    {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| format!("cannot set no_new_privs: {e}"))?;
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .map_err(|e| format!("cannot make the worker non-dumpable: {e}"))?;
    }
    Ok(())
}
