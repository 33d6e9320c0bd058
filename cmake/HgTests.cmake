# How unit tests and fuzz targets are added, for the gateway's tests/ and
# for hubsim alike.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

# One cmocka executable per source matching GLOB, linked with LIB, as the
# ctest test unit.NAME (label "unit").
function(hg_add_unit_tests GLOB LIB)
  file(GLOB sources CONFIGURE_DEPENDS ${GLOB})
  foreach(src ${sources})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE ${LIB} PkgConfig::CMOCKA)
    add_test(NAME unit.${name} COMMAND ${name})
    set_tests_properties(unit.${name} PROPERTIES LABELS "unit" TIMEOUT 120)
  endforeach()
endfunction()

# Fuzz targets (fuzz_NAME.c defining LLVMFuzzerTestOneInput) matching GLOB,
# linked with LIB. In the normal build a small driver replays the seed
# corpus tests/fuzz/corpus/NAME, so every target is compiled and exercised
# by ctest; with HG_FUZZ=ON (clang) they link against libFuzzer instead.
function(hg_add_fuzz_targets GLOB LIB)
  file(GLOB sources CONFIGURE_DEPENDS ${GLOB})
  foreach(src ${sources})
    get_filename_component(name ${src} NAME_WE)
    string(REPLACE "fuzz_" "" short ${name})
    if(HG_FUZZ)
      add_executable(${name} ${src})
      target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
      target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    else()
      add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay.c)
    endif()
    target_link_libraries(${name} PRIVATE ${LIB})
    add_test(NAME fuzz.${name}
             COMMAND ${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${short})
    set_tests_properties(fuzz.${name} PROPERTIES LABELS "unit" TIMEOUT 300)
  endforeach()
endfunction()
