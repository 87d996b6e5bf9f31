/* The faults guest's user address space (LPAE level-3 pages). */
#ifndef FAULTS_H
#define FAULTS_H

#define PSR_MODE_USR        0x10

#define USER_CODE_VA        0x00010000  /* user_code: read-only, PXN */
#define USER_DATA_VA        0x00011000  /* read/write, XN, PXN */
#define USER_GAP_VA         0x00012000  /* not mapped */
#define USER_RO_VA          0x00013000  /* read-only, XN, PXN */
#define USER_XN_VA          0x00014000  /* read/write, XN, PXN */
#define KERNEL_PROBE_VA     0x80008000  /* the image: a PL1-only 2 MiB block */

#endif /* FAULTS_H */
