//! Kernel errno values: what emulated primitives return, as the kernel does.

use std::fmt;

/// A positive kernel errno; primitives return it where the kernel returns `-errno`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $v:expr),* $(,)?) => {
        impl Errno {
            $(#[doc = concat!("`", stringify!($name), "`")] pub const $name: Errno = Errno($v);)*
            /// The symbolic name (`EFAULT`).
            #[must_use]
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($v => stringify!($name),)*
                    _ => "E?",
                }
            }
            /// Parses a symbolic name such as `EFAULT`.
            #[must_use]
            pub fn from_name(s: &str) -> Option<Errno> {
                match s {
                    $(stringify!($name) => Some(Errno($v)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11, ENOMEM = 12, EFAULT = 14, ENOTBLK = 15,
    EBUSY = 16, EEXIST = 17, ENODEV = 19, EINVAL = 22, ENOSPC = 28, ESPIPE = 29, EPIPE = 32, EDEADLK = 35, EOVERFLOW = 75, EMSGSIZE = 90,
    EOPNOTSUPP = 95, ECONNABORTED = 103, ENOBUFS = 105, ENOTCONN = 107, EDQUOT = 122, EHWPOISON = 133, ERESTARTSYS = 512,
}

impl Errno {
    /// The value the kernel returns: `-errno`.
    #[must_use]
    pub fn to_ret(self) -> i64 {
        -i64::from(self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{}", self.name())
    }
}
