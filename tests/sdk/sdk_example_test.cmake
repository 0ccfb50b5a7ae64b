# Run by ctest as `cmake -P`; see CMakeLists.txt for the variables it gets.
cmake_minimum_required(VERSION 3.25)

set(prefix ${WORK_DIR}/prefix)
set(example_build ${WORK_DIR}/example-build)
set(fcvm ${prefix}/${INSTALL_BINDIR}/fcvm)

# Runs a command; on failure stops the test with its output.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

# 1. Install everything; the SDK's pieces must be there.
run("cmake --install (is the whole tree built?)"
    ${CMAKE_COMMAND} --install ${FCVM_BUILD_DIR} --prefix ${prefix})
foreach(f ${INSTALL_INCLUDEDIR}/fcvm/plugin.h ${INSTALL_INCLUDEDIR}/fcvm/network.h
          ${INSTALL_LIBDIR}/libfcvm-sdk.so ${INSTALL_LIBDIR}/cmake/fcvm/fcvmConfig.cmake
          ${INSTALL_LIBDIR}/cmake/fcvm/fcvmConfigVersion.cmake
          ${INSTALL_LIBDIR}/cmake/fcvm/fcvmTargets.cmake
          ${INSTALL_LIBDIR}/cmake/fcvm/FcvmPlugin.cmake ${INSTALL_BINDIR}/fcvm)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "the install lacks ${f}")
  endif()
endforeach()

# 2. Build the example out of tree against the installed package only.
run("configuring examples/plugin-example against ${prefix}"
    ${CMAKE_COMMAND} -S ${EXAMPLE_SOURCE_DIR} -B ${example_build}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON)
run("building examples/plugin-example" ${CMAKE_COMMAND} --build ${example_build})
set(plugin_file ${example_build}/fcvm-network-none-example.so)
if(NOT EXISTS ${plugin_file})
  message(FATAL_ERROR "the example build made no ${plugin_file}")
endif()

# 3. The installed fcvm loads it through the real loader, creates its backend with its
#    config object and runs its probe.
file(WRITE ${WORK_DIR}/config.json
     "{\"plugin_config\": {\"network-none-example\": {\"note\": \"sdk test note\"}}}\n")
run("fcvm plugins --json"
    ${CMAKE_COMMAND} -E env --unset=FCVM_PLUGIN_PATH --unset=FCVM_DATA_DIR --unset=FCVM_LOG
    ${fcvm} --config ${WORK_DIR}/config.json --data-dir ${WORK_DIR}/data
    --plugin-dir ${example_build} plugins --json)
set(listing "${run_output}")
string(JSON count ERROR_VARIABLE json_error LENGTH "${listing}")
if(json_error)
  message(FATAL_ERROR "fcvm plugins --json printed no JSON array: ${json_error}\n${listing}")
endif()
set(found FALSE)
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON name ERROR_VARIABLE no_name GET "${listing}" ${i} name)
  if(no_name OR NOT name STREQUAL "network-none-example")
    continue()
  endif()
  set(found TRUE)
  string(JSON kind GET "${listing}" ${i} kind)
  string(JSON file GET "${listing}" ${i} file)
  string(JSON available GET "${listing}" ${i} available)
  string(JSON reason GET "${listing}" ${i} reason)
  file(REAL_PATH ${plugin_file} real_plugin)
  if(NOT kind STREQUAL "network")
    message(FATAL_ERROR "the example is listed as '${kind}', not network")
  elseif(NOT file STREQUAL real_plugin)
    message(FATAL_ERROR "the example was loaded from ${file}, not ${real_plugin}")
  elseif(NOT available)
    message(FATAL_ERROR "the example's probe says unavailable: ${reason}")
  elseif(NOT reason STREQUAL "VMs get no network (sdk test note)")
    message(FATAL_ERROR "the example's probe did not run with its config: '${reason}'")
  endif()
endforeach()
if(NOT found)
  message(FATAL_ERROR "fcvm plugins does not list network-none-example:\n${listing}")
endif()

# 4. Installed into the same prefix, the installed fcvm finds it with no flags.
run("installing the example" ${CMAKE_COMMAND} --install ${example_build} --prefix ${prefix})
run("fcvm plugins (no --plugin-dir)"
    ${CMAKE_COMMAND} -E env --unset=FCVM_PLUGIN_PATH --unset=FCVM_DATA_DIR --unset=FCVM_LOG
    ${fcvm} --config ${WORK_DIR}/config.json --data-dir ${WORK_DIR}/data plugins)
string(REGEX MATCH "network-none-example +network +0\\.1\\.0 +available +[^\n]*/fcvm/plugins/fcvm-network-none-example\\.so"
       row "${run_output}")
if(NOT row)
  message(FATAL_ERROR "the installed fcvm does not list the installed example:\n${run_output}")
endif()
message(STATUS "network-none-example: built against ${prefix}, loaded and probed by ${fcvm}")
