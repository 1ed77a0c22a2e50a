#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace snapmgr {

// Standard CRC-32C (Castagnoli, reflected, initial value and final xor
// 0xffffffff), the checksum the kernel computes with crc32c().
std::uint32_t crc32c(std::span<const std::uint8_t> data) noexcept;

} // namespace snapmgr
