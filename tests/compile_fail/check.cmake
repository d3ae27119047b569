# Compiles SOURCE twice (syntax only): with -DPGQ_CONTROL, where it uses a
# type that has a codec, it must compile (so that the include paths and the
# snippet are sound); without, it must fail with every word of EXPECT (the
# concept's name and the type's) in the compiler's output.
#
# cmake -DCXX=... -DSTD_FLAG=-std=c++20 -DINCLUDES_FILE=... -DSOURCE=...
#       -DEXPECT=decodable,not_a_pg_type -P check.cmake
file(STRINGS "${INCLUDES_FILE}" dirs)
list(REMOVE_DUPLICATES dirs)
string(REPLACE "," ";" EXPECT "${EXPECT}")
set(flags ${STD_FLAG} -fsyntax-only)
foreach(d IN LISTS dirs)
  if(d)
    list(APPEND flags "-I${d}")
  endif()
endforeach()

execute_process(COMMAND "${CXX}" ${flags} -DPGQ_CONTROL "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the control (a type with a codec) does not compile:\n${out}")
endif()

execute_process(COMMAND "${CXX}" ${flags} "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled with a type that has no codec")
endif()
foreach(word IN LISTS EXPECT)
  string(FIND "${out}" "${word}" at)
  if(at LESS 0)
    message(FATAL_ERROR "the compile error does not name ${word}:\n${out}")
  endif()
endforeach()
