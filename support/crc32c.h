/* crc32c.h: CRC-32C (Castagnoli), the checksum of TensorStore's OCDBT
 * objects and of zarr3's crc32c codec: reflected polynomial 0x82F63B78,
 * initial value and final xor 0xFFFFFFFF. crc32c(0, "123456789", 9) is
 * 0xE3069283. */
#ifndef SURG_CRC32C_H
#define SURG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of `n` more bytes after a CRC of `crc` (0 to start). */
uint32_t crc32c(uint32_t crc, const void *data, size_t n);

#endif
