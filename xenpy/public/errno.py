"""xen/include/public/errno.h: Xen's errno values (the same numbers as Linux)."""

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
ENOEXEC = 8
EBADF = 9
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
EINVAL = 22
ENOSPC = 28
ERANGE = 34
ENOSYS = 38
ENODATA = 61
EOPNOTSUPP = 95
EADDRINUSE = 98
EADDRNOTAVAIL = 99
ETIMEDOUT = 110
EOVERFLOW = 75

NAMES = {v: k for k, v in dict(globals()).items() if k.isupper() and isinstance(v, int)}
