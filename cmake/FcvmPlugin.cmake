# fcvm_add_plugin(NAME <name> SOURCES <src>... [LIBS <lib>...])
# Builds plugin <name> as the module fcvm-<name>.so with hidden visibility, linked to the
# fcvm SDK. Used in-tree and, after find_package(fcvm), by third-party plugins.
#
# In-tree the module lands in the build tree's lib/fcvm/plugins (FCVM_PLUGIN_OUTPUT_DIR),
# where bin/fcvm finds it; out of tree it lands in the current binary dir. Either way it
# installs to FCVM_PLUGIN_INSTALL_DIR (lib/fcvm/plugins under the install prefix).
function(fcvm_add_plugin)
  cmake_parse_arguments(P "" "NAME" "SOURCES;LIBS" ${ARGN})
  if(NOT P_NAME OR NOT P_SOURCES)
    message(FATAL_ERROR "fcvm_add_plugin: NAME and SOURCES are required")
  endif()
  set(target fcvm-${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  # Host and plugin must agree on the language level and flags (no C++ ABI promise across
  # a .so boundary), so plugins build like fcvm: C++20 without GNU extensions.
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_STANDARD 20
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${target} PRIVATE fcvm::sdk ${P_LIBS})
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  # Suites that run against every plugin (tests/contract) depend on this list.
  set_property(GLOBAL APPEND PROPERTY FCVM_PLUGIN_TARGETS ${target})
  if(TARGET fcvm_warnings)
    target_link_libraries(${target} PRIVATE fcvm_warnings)
  endif()
  if(DEFINED FCVM_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${FCVM_PLUGIN_OUTPUT_DIR})
  endif()
  if(DEFINED FCVM_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${FCVM_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
