//! The filesystem layer: the workspace capability and everything that
//! touches the host's filesystem for a client or a guest.
//!
//! - [`workspace`]: [`Workspace`], one capability on the root and every
//!   filesystem operation the protocol offers.
//! - [`path`]: URIs and visible paths mapped lexically into the root.
//! - [`quota`]: the disk quota of a workspace.
//! - [`scratch`]: the guests' private `/tmp` and the skeleton above the root.
//!
//! Nothing here opens a host path by name except [`Workspace::open_in`] and
//! the scratch area it makes; everything else goes through cap-std.

pub mod path;
pub mod quota;
pub mod scratch;
pub mod tree;
pub mod workspace;

pub use path::{Mapped, PathMap, UriError, parse_file_uri, to_file_uri};
pub use quota::{DiskQuota, QuotaExceeded};
pub use scratch::{Scratch, fresh_scratch_dir, remove_scratch_dir, sweep_stale_scratch};
pub use workspace::{DirEntry, FsError, FsResult, Metadata, Workspace, strerror};
