/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), the checksum of
 * iSCSI, ext4 metadata, LevelDB and RocksDB logs, and of strata's WAL and
 * segment files.
 *
 * The value is the standard one: initial value 0xffffffff, final xor
 * 0xffffffff, so crc32c("123456789", 9) == 0xe3069283. On x86-64 CPUs with
 * SSE4.2 the crc32 instruction is used (chosen once at run time); elsewhere
 * a table-driven slicing-by-8 loop. Both give identical results and are
 * thread-safe.
 */
#ifndef ST_UTIL_CRC32C_H
#define ST_UTIL_CRC32C_H

#include "util/common.h"

/* The CRC-32C of len bytes at buf. */
uint32_t crc32c(const void *buf, size_t len);

/*
 * Continues a CRC: crc32c_extend(crc32c(a, n), b, m) equals the CRC of the
 * concatenation of a and b. crc32c_extend(0, buf, len) == crc32c(buf, len).
 */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* Test hooks: the portable slicing-by-8 path, and whether hardware is used. */
uint32_t crc32c__extend_portable(uint32_t crc, const void *buf, size_t len);
bool crc32c__hw_available(void);

#endif
