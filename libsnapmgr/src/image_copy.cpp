#include "image_copy.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <thread>

#include <fmt/core.h>

#include "aligned_buffer.hpp"
#include "throw_errno.hpp"

namespace snapmgr {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t copy_buffer_bytes = 1 << 20;
constexpr std::uint64_t copy_piece_bytes = 4 << 20;
constexpr unsigned copy_threads = 8;

bool all_zero(const std::uint8_t *p, std::size_t n)
{
	return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

} // namespace

CopySource::CopySource(const std::string &path, const char *what, bool direct) : name_(path)
{
	fd_ = FileDescriptor(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0)));
	if (!fd_.valid())
		throw_errno(path, fmt::format("cannot open {}", what));
}

ImageFile::ImageFile(const fs::path &image, bool fresh) : name_(image.string()), fresh_(fresh)
{
	// Direct I/O: a backup streams far more than the page cache should
	// hold, and buffered writes of it run several times slower than dd's.
	// Filesystems without O_DIRECT (tmpfs) get buffered writes.
	int flags = O_WRONLY | O_CLOEXEC | (fresh ? O_CREAT | O_TRUNC : 0);
	fd_ = FileDescriptor(::open(image.c_str(), flags | O_DIRECT, 0600));
	if (!fd_.valid() && errno == EINVAL)
		fd_ = FileDescriptor(::open(image.c_str(), flags, 0600));
	if (!fd_.valid())
		throw_errno(name_, "cannot open the backup image");
	if (fresh && ::fchmod(fd_.get(), 0600) < 0)
		throw_errno(name_, "cannot set mode 0600");
}

void ImageFile::set_size(std::uint64_t bytes)
{
	if (::ftruncate(fd_.get(), off_t(bytes)) < 0)
		throw_errno(name_, "cannot size the backup image");
}

void ImageFile::copy(const CopyPiece &piece, std::uint8_t *buffer, std::size_t buffer_bytes)
{
	std::uint64_t from = piece.from, to = piece.to, length = piece.length;
	while (length) {
		std::size_t n = std::size_t(std::min<std::uint64_t>(length, buffer_bytes));
		ssize_t got = ::pread(piece.source->fd(), buffer, n, off_t(from));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			if (got == 0)
				errno = EIO;
			throw_errno(piece.source->name(), fmt::format("cannot read at byte {}", from));
		}
		n = std::size_t(got);
		if (!(fresh_ && all_zero(buffer, n))) {
			for (std::size_t done = 0; done < n;) {
				ssize_t w = ::pwrite(fd_.get(), buffer + done, n - done, off_t(to + done));
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0 && errno == EINVAL && drop_direct_io())
					continue; // an unaligned piece: buffered
				if (w < 0)
					throw_errno(name_, fmt::format("cannot write at byte {}", to + done));
				done += std::size_t(w);
			}
		}
		from += n;
		to += n;
		length -= n;
	}
}

bool ImageFile::drop_direct_io()
{
	std::lock_guard guard(direct_io_lock_);
	int fl = ::fcntl(fd_.get(), F_GETFL);
	if (fl < 0 || !(fl & O_DIRECT))
		return false;
	return ::fcntl(fd_.get(), F_SETFL, fl & ~O_DIRECT) == 0;
}

void ImageFile::sync()
{
	if (::fsync(fd_.get()) < 0)
		throw_errno(name_, "cannot flush the backup image (fsync)");
}

void copy_pieces(ImageFile &image, const std::vector<CopyPiece> &whole,
		 const std::function<void(std::uint64_t, std::uint64_t)> &progress)
{
	std::vector<CopyPiece> pieces;
	std::uint64_t total = 0;
	for (const auto &p : whole) {
		total += p.length;
		for (std::uint64_t at = 0; at < p.length; at += copy_piece_bytes)
			pieces.push_back({p.source, p.from + at, p.to + at,
					  std::min(copy_piece_bytes, p.length - at)});
	}
	std::atomic<std::size_t> next{0};
	std::mutex lock;
	std::uint64_t done = 0;
	std::exception_ptr failure;
	auto worker = [&] {
		AlignedBuffer buffer(copy_buffer_bytes);
		for (;;) {
			std::size_t i = next++;
			if (i >= pieces.size())
				return;
			try {
				image.copy(pieces[i], buffer.data(), buffer.size());
			} catch (...) {
				std::lock_guard guard(lock);
				if (!failure)
					failure = std::current_exception();
				next = pieces.size(); // the others stop too
				return;
			}
			std::lock_guard guard(lock);
			done += pieces[i].length;
			if (progress)
				progress(done, total);
		}
	};
	{
		std::vector<std::jthread> threads;
		for (unsigned t = 0; t < copy_threads; t++)
			threads.emplace_back(worker);
	}
	if (failure)
		std::rethrow_exception(failure);
}

} // namespace snapmgr
