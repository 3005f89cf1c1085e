# `cmake --install`: the C API header, libqtf.so (+ the static archives), the qtf tool, and the package
# files apps use to find it: qtfConfig.cmake (find_package(qtf) -> qtf::qtf) and qtf.pc (pkg-config).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(FILES ${PROJECT_SOURCE_DIR}/engine/capi/qtf.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET qtf_shared)
  add_library(qtf::qtf ALIAS qtf_shared)  # the same name inside this build as for an installed package
  set_target_properties(qtf_shared PROPERTIES EXPORT_NAME qtf)
  install(TARGETS qtf_shared EXPORT qtfTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT qtfTargets NAMESPACE qtf:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/qtf)
endif()
# Static linking by hand: -lqtf_host -lqtf_core -lstdc++ -lm.
install(TARGETS qtf_host qtf_core ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(TARGET qtf)
  install(TARGETS qtf RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(QTF_HAS_SHARED 0)
if(TARGET qtf_shared)
  set(QTF_HAS_SHARED 1)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/qtfConfig.cmake.in ${PROJECT_BINARY_DIR}/qtfConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/qtf)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/qtfConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/qtfConfig.cmake ${PROJECT_BINARY_DIR}/qtfConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/qtf)

# pkg-config: paths relative to the .pc file's prefix so an installed tree can be moved.
file(RELATIVE_PATH QTF_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" QTF_PC_TO_PREFIX "${QTF_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/qtf.pc.in ${PROJECT_BINARY_DIR}/qtf.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/qtf.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
