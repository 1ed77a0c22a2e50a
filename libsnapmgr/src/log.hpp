#pragma once
// The library's three ways to tell the caller's Logger something (each does
// nothing when the caller installed none), and undo steps that report
// through it.
#include <fmt/core.h>

#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "snapmgr/volume.hpp"

namespace snapmgr {

inline void log_step(const Logger &log, std::string_view text)
{
	if (log)
		log(Severity::step, text);
}

inline void log_warning(const Logger &log, std::string_view text)
{
	if (log)
		log(Severity::warning, text);
}

inline void log_error(const Logger &log, std::string_view text)
{
	if (log)
		log(Severity::error, text);
}

// Undo steps run in reverse order unless the operation commits. An undo
// that fails too is reported through the logger: the original error is the
// one the caller sees.
class Rollback {
public:
	explicit Rollback(const Logger &log) : log_(log) {}
	Rollback(const Rollback &) = delete;
	Rollback &operator=(const Rollback &) = delete;
	~Rollback()
	{
		if (committed_)
			return;
		for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
			try {
				it->second();
			} catch (const std::exception &e) {
				log_error(log_, fmt::format("rollback: cannot {}: {}", it->first, e.what()));
			}
		}
	}
	void add(std::string what, std::function<void()> undo)
	{
		steps_.emplace_back(std::move(what), std::move(undo));
	}
	void commit() noexcept { committed_ = true; }

private:
	const Logger &log_;
	std::vector<std::pair<std::string, std::function<void()>>> steps_;
	bool committed_ = false;
};

} // namespace snapmgr
