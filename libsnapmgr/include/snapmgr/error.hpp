#pragma once

#include <stdexcept>
#include <string>

namespace snapmgr {

// Every failure the library reports is a snapmgr::Error: the message says
// what was tried and why it failed, object() names the file, device or
// argument involved, and error_number() carries the errno when a system call
// failed (0 when the failure is a decision of ours, e.g. a bad checksum).
class Error : public std::runtime_error {
public:
	Error(std::string object, int error_number, const std::string &message)
		: std::runtime_error(message), object_(std::move(object)),
		  error_number_(error_number)
	{
	}

	const std::string &object() const noexcept { return object_; }
	int error_number() const noexcept { return error_number_; }

private:
	std::string object_;
	int error_number_;
};

// The caller asked for something that cannot work (bad size, bad chunk
// size, the path already exists): nothing was changed.
class UsageError : public Error {
public:
	using Error::Error;
};

// A system call on a file or block device failed.
class DeviceError : public Error {
public:
	using Error::Error;
};

// The store cannot be created or used as asked (unsupported filesystem,
// extents that can move, too small for its metadata).
class StoreError : public Error {
public:
	using Error::Error;
};

// Store metadata read back is not what we wrote: bad magic, checksum, block
// number, foreign UUID or an inconsistent layout. Never trusted.
class StoreCorruptError : public StoreError {
public:
	using StoreError::StoreError;
};

// The held snapshot became invalid (its store filled, or could not be
// written) while it was being read: what was read cannot be trusted.
class SnapshotLostError : public Error {
public:
	using Error::Error;
};

} // namespace snapmgr
