# Runs PROG (with the arguments ARGS, a list, if given) and checks that its
# exit status is 0, that its stdout matches every regular expression of
# EXPECT and, if EXPECT_ERR is given, its stderr every one of EXPECT_ERR.
# One expression a line; '#' lines and empty ones are ignored. A line that
# starts with '!' must NOT match. "\n" in an expression stands for a
# newline (CMake's own syntax has none), so that a line order can be
# asserted: "^hello\nworld\n".
execute_process(COMMAND ${PROG} ${ARGS} OUTPUT_VARIABLE out ERROR_VARIABLE err
  RESULT_VARIABLE rc TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROG} exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()

function(check file text what)
  file(STRINGS ${file} lines)
  foreach(re ${lines})
    if(re MATCHES "^#" OR re STREQUAL "")
      continue()
    endif()
    string(REPLACE "\\n" "\n" re "${re}")
    if(re MATCHES "^!")
      string(SUBSTRING "${re}" 1 -1 re)
      if(text MATCHES "${re}")
        message(FATAL_ERROR "${what} matches /${re}/, which it must not\n"
          "stdout:\n${out}\nstderr:\n${err}")
      endif()
    elseif(NOT text MATCHES "${re}")
      message(FATAL_ERROR "${what} does not match /${re}/\nstdout:\n${out}\nstderr:\n${err}")
    endif()
  endforeach()
endfunction()

check(${EXPECT} "${out}" "stdout")
if(EXPECT_ERR)
  check(${EXPECT_ERR} "${err}" "stderr")
endif()
message(STATUS "ok:\n${out}")
