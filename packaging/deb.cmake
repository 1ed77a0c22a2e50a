# Debian packages, made by CPack from the project's own install rules
# (`cmake --build BUILD --target package`), so that what a package holds and
# what `cmake --install` puts on a machine cannot differ. Two packages:
#   snapmgr        the CLI, cowfile-store, snapmgrd, udev rules, the dracut
#                  module, systemd units and man pages;
#   snapmgr-dkms   the module's source and dkms.conf: DKMS builds it for
#                  every installed kernel, and again on each kernel install.
# The built module itself (component "module") is not packaged: a module
# built for the build machine's kernel is what breaks on upgrades.
#
# Configure a package build with -DCMAKE_INSTALL_PREFIX=/usr: the rules, the
# units and the dracut module name the installed binaries by that prefix.
# docs/PACKAGING.md says how, and what the maintainer scripts do.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME snapmgr)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "snapmgr developers <snapmgr-devel@lists.example.org>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL snapmgr dkms)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://snapmgr.example.org/")

set(_deb ${CMAKE_CURRENT_LIST_DIR}/deb)
set(_staged ${CMAKE_BINARY_DIR}/packaging)
foreach(_script snapmgr/postinst snapmgr/prerm snapmgr/postrm
                snapmgr-dkms/postinst snapmgr-dkms/prerm)
  configure_file(${_deb}/${_script}.in ${_staged}/${_script} @ONLY
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
                                  GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()

set(CPACK_DEBIAN_SNAPMGR_PACKAGE_NAME snapmgr)
set(CPACK_DEBIAN_SNAPMGR_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_SNAPMGR_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_SNAPMGR_PACKAGE_DEPENDS
    "snapmgr-dkms (= ${PROJECT_VERSION}), dmsetup, udev, e2fsprogs, kmod")
set(CPACK_DEBIAN_SNAPMGR_PACKAGE_RECOMMENDS "dracut | dracut-core, lvm2, xfsprogs")
set(CPACK_DEBIAN_SNAPMGR_PACKAGE_CONTROL_EXTRA
    ${_staged}/snapmgr/postinst ${_staged}/snapmgr/prerm ${_staged}/snapmgr/postrm)
set(CPACK_DEBIAN_SNAPMGR_DESCRIPTION
"live snapshots and changed-block tracking for Linux volumes
snapmgr slides the dm-cowfile device-mapper target under a volume, live
when the volume is already a device-mapper device, at boot otherwise. The
target records every changed chunk, crash-safely; a snapshot freezes an
instant by copying old blocks into a preallocated store file, and
snapmgr backup copies the frozen image, only the changed chunks after the
first time. This package holds the snapmgr and cowfile-store commands, the
snapmgrd backup agent, the udev rules, the dracut module and the systemd
units; the kernel module comes from snapmgr-dkms.")

set(CPACK_DEBIAN_DKMS_PACKAGE_NAME snapmgr-dkms)
set(CPACK_DEBIAN_DKMS_PACKAGE_SECTION kernel)
set(CPACK_DEBIAN_DKMS_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_DKMS_PACKAGE_DEPENDS "dkms (>= 2.8)")
set(CPACK_DEBIAN_DKMS_PACKAGE_CONTROL_EXTRA
    ${_staged}/snapmgr-dkms/postinst ${_staged}/snapmgr-dkms/prerm)
set(CPACK_DEBIAN_DKMS_DESCRIPTION
"dm-cowfile kernel module source, built by DKMS
The dm-cowfile device-mapper target of snapmgr, as source with its
dkms.conf: DKMS builds it for every installed kernel that has its headers,
and again whenever a kernel is installed, so that an upgrade never leaves
a tracked volume without its module.")

# Each package's copyright and changelog (Debian policy 12.5, 12.7).
foreach(_package snapmgr snapmgr-dkms)
  if(_package STREQUAL snapmgr)
    set(_component snapmgr)
  else()
    set(_component dkms)
  endif()
  install(FILES ${_deb}/copyright DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${_package}
          COMPONENT ${_component})
  add_custom_command(OUTPUT ${_staged}/${_package}/changelog.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_staged}/${_package}
    COMMAND sh -c "gzip -9n < \"$1\" > \"$2\"" sh ${_deb}/changelog ${_staged}/${_package}/changelog.gz
    DEPENDS ${_deb}/changelog VERBATIM)
  list(APPEND _changelogs ${_staged}/${_package}/changelog.gz)
  install(FILES ${_staged}/${_package}/changelog.gz
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${_package} COMPONENT ${_component})
endforeach()
add_custom_target(package-changelogs ALL DEPENDS ${_changelogs})

include(CPack)
