#pragma once

// Boot integration (udev/, dracut/): which raw devices the udev rules claim,
// and what happens when a volume cannot be attached at boot. A broken
// tracking setup never costs a boot: the device is given back unwrapped,
// the store is marked so that its next attach starts a new generation (the
// next backup is full), and the reason goes to the kernel log.

#include <optional>
#include <string>

#include "snapmgr/config.hpp"
#include "snapmgr/volume.hpp"

namespace snapmgr {

// What a udev rule needs to know about a block device, quickly and without
// changing anything (udev-claim in snapmgr(8)).
struct UdevClaim {
	std::string volume;
	// Hide the device (SYSTEMD_READY=0, no by-uuid link) so that everything
	// finds the wrapper instead. False when the device must stay visible:
	// it was given back this boot, or it is mounted directly. With boot
	// integration disabled it stays hidden until reattach --boot gives it
	// back, its store marked lost.
	bool claim = false;
	// The volume's wrapper (or its -real layer) holds the device already.
	bool attached = false;
};
// nullopt for a device no configured volume names. A dm device is never
// claimed (a volume's dm device is found by its name instead).
std::optional<UdevClaim> udev_claim(const std::string &devnode);

// "rd.snapmgr=0" or "snapmgr=0" on the kernel command line.
bool boot_disabled();

// Why this boot gave volume `name` back unwrapped, if it did (kept in
// /run/snapmgr/given-back/<name> until the next boot).
std::optional<std::string> given_back_reason(const std::string &name);

// Gives a configured volume's device back without its wrapper after `why`
// kept it from being attached: records the reason, marks the store's
// tracking lost when its superblock is where the configuration says (so
// the next attach starts a new generation), logs to the kernel log, and
// asks udev to look at the device again so the claim is dropped.
struct GiveBack {
	std::string device;      // the device given back, when it was found
	bool marked_lost = false; // the store now records lost tracking
	std::string store_note;  // why it could not be marked, when it was not
};
GiveBack give_back(const VolumeConfig &config, const std::string &why, const Logger &log = {});

} // namespace snapmgr
