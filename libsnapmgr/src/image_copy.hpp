#pragma once
// Writing a raw backup image from several sources at once (backup.cpp,
// disk.cpp): pieces of a snapshot image, of the live disk or of a file, each
// copied to its offset in the image, with several reads and writes in
// flight.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "file_descriptor.hpp"

namespace snapmgr {

// Something to copy from: a device opened for direct reads, or a file.
class CopySource {
public:
	// Throws DeviceError naming `what` ("the snapshot image") on failure.
	CopySource(const std::string &path, const char *what, bool direct = true);
	int fd() const noexcept { return fd_.get(); }
	const std::string &name() const noexcept { return name_; }

private:
	std::string name_;
	FileDescriptor fd_;
};

struct CopyPiece {
	const CopySource *source = nullptr;
	std::uint64_t from = 0; // offset in the source
	std::uint64_t to = 0;   // offset in the image
	std::uint64_t length = 0;
};

class ImageFile {
public:
	// fresh: created or truncated, so it starts as a hole and zero blocks
	// need not be written.
	ImageFile(const std::filesystem::path &image, bool fresh);
	void set_size(std::uint64_t bytes);
	// Safe to call from several threads at once, each with its own buffer.
	void copy(const CopyPiece &piece, std::uint8_t *buffer, std::size_t buffer_bytes);
	void sync();

private:
	bool drop_direct_io();

	std::string name_;
	FileDescriptor fd_;
	bool fresh_ = false;
	std::mutex direct_io_lock_;
};

// Copies the pieces with several in flight (an incremental backup is
// thousands of small ranges; one at a time waits out every round trip);
// large pieces are cut so that a full copy spreads too. progress gets bytes
// done and the total after each piece.
void copy_pieces(ImageFile &image, const std::vector<CopyPiece> &pieces,
		 const std::function<void(std::uint64_t, std::uint64_t)> &progress);

} // namespace snapmgr
