/* SVC immediates of the unmask guest's exception-return variants (vectors.S). */
#ifndef UNMASK_H
#define UNMASK_H

#define SVC_SUBS        1
#define SVC_RFE         2
#define SVC_LDM         3

#endif
