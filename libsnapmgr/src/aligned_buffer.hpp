#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <cstring>

namespace snapmgr {

// A zeroed buffer aligned for O_DIRECT I/O (4 KiB covers every logical
// block size a store device can have, since store blocks are 4 KiB).
class AlignedBuffer {
public:
	static constexpr std::size_t alignment = 4096;

	explicit AlignedBuffer(std::size_t size)
		: size_(size),
		  data_(static_cast<std::uint8_t *>(std::aligned_alloc(alignment, round_up(size))))
	{
		if (!data_)
			throw std::bad_alloc();
		std::memset(data_.get(), 0, round_up(size));
	}

	std::uint8_t *data() noexcept { return data_.get(); }
	const std::uint8_t *data() const noexcept { return data_.get(); }
	std::size_t size() const noexcept { return size_; }
	std::span<std::uint8_t> span() noexcept { return {data_.get(), size_}; }
	std::span<const std::uint8_t> span() const noexcept { return {data_.get(), size_}; }

private:
	static std::size_t round_up(std::size_t n)
	{
		return n ? (n + alignment - 1) / alignment * alignment : alignment;
	}
	struct FreeDeleter {
		void operator()(std::uint8_t *p) const noexcept { std::free(p); }
	};
	std::size_t size_;
	std::unique_ptr<std::uint8_t, FreeDeleter> data_;
};

} // namespace snapmgr
