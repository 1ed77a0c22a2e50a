# private-apt.sh: sourced by the kernel scripts. Defines apt_get and
# apt_cache working on a private apt configuration under $1 with the
# sources "URI SUITE COMPONENTS" lines of $2: its own sources list, package
# lists, .deb cache and (empty) dpkg status. The system's apt configuration
# is never read for sources nor changed.
#
#   . scripts/private-apt.sh
#   private_apt "$cache/apt" "http://deb.debian.org/debian bookworm main"
#   apt_get update; apt_get download linux-source-6.1

private_apt() {
	_aptdir=$1
	mkdir -p "$_aptdir/lists/partial" "$_aptdir/cache/archives/partial" "$_aptdir/debs"
	: >"$_aptdir/status"
	echo "$2" | while read -r uri suite comps; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite $comps"
	done >"$_aptdir/sources.list"
	apt_opts="-o Dir::Etc::SourceList=$_aptdir/sources.list -o Dir::Etc::SourceParts=/dev/null
 -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
 -o Dir::State::Lists=$_aptdir/lists -o Dir::Cache=$_aptdir/cache -o Dir::State::status=$_aptdir/status
 -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Acquire::Languages=none
 -o APT::Sandbox::User=root -o Debug::NoLocking=1 -q"
}

# shellcheck disable=SC2086
apt_get() { apt-get $apt_opts "$@"; }
# shellcheck disable=SC2086
apt_cache() { apt-cache $apt_opts "$@"; }
