# mpprof runtime, built into MicroPython as a user C module: the CMake form of
# micropython.mk, for the CMake-based ports (rp2, esp32). Pass this file as
# USER_C_MODULES=<dir>/micropython.cmake.
#
# Cache variables (on the first configure, the environment variables of the
# same names are used when the variables are not given with -D):
#   MPPROF_PORT       cortexm | esp32 (default: esp32 under ESP-IDF, else cortexm)
#   MPPROF_TRANSPORT  rtt | uart      (default: uart for esp32, else rtt)
#   MPPROF_LINE_TIME  0 | 1           (default 0; 1: exact time per line, mpprof_line.c)
#
# The board configuration wrapper, mpprof_board_config.h, is looked for next
# to this file and in ../ports/boards (where it is in the mpprof repository).
# It becomes MP_CONFIGFILE for the whole firmware, including the qstr and
# root-pointer scans, which see the same configuration as the compiler.

add_library(usermod_mpprof INTERFACE)

if(NOT MPPROF_PORT)
    if(DEFINED ENV{MPPROF_PORT})
        set(_mpprof_port "$ENV{MPPROF_PORT}")
    elseif(IDF_TARGET OR ESP_PLATFORM OR CONFIG_IDF_TARGET)
        set(_mpprof_port esp32)
    else()
        set(_mpprof_port cortexm)
    endif()
    set(MPPROF_PORT ${_mpprof_port} CACHE STRING "mpprof port layer: cortexm or esp32")
endif()
if(NOT MPPROF_PORT MATCHES "^(cortexm|esp32)$")
    message(FATAL_ERROR "MPPROF_PORT must be cortexm or esp32, not '${MPPROF_PORT}'")
endif()

if(NOT MPPROF_TRANSPORT)
    if(DEFINED ENV{MPPROF_TRANSPORT})
        set(_mpprof_transport "$ENV{MPPROF_TRANSPORT}")
    elseif(MPPROF_PORT STREQUAL "esp32")
        set(_mpprof_transport uart)
    else()
        set(_mpprof_transport rtt)
    endif()
    set(MPPROF_TRANSPORT ${_mpprof_transport} CACHE STRING "mpprof transport: rtt or uart")
endif()
if(NOT MPPROF_TRANSPORT MATCHES "^(rtt|uart)$")
    message(FATAL_ERROR "MPPROF_TRANSPORT must be rtt or uart, not '${MPPROF_TRANSPORT}'")
endif()
if(MPPROF_PORT STREQUAL "esp32" AND MPPROF_TRANSPORT STREQUAL "rtt")
    # RTT needs a debug probe reading target RAM; the ESP32 port has none.
    message(FATAL_ERROR "mpprof on esp32 needs MPPROF_TRANSPORT=uart")
endif()

target_sources(usermod_mpprof INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/mpprof_rt.c
    ${CMAKE_CURRENT_LIST_DIR}/mpprof_wire.c
    ${CMAKE_CURRENT_LIST_DIR}/mpprof_vm.c
    ${CMAKE_CURRENT_LIST_DIR}/mpprof_mod.c
    ${CMAKE_CURRENT_LIST_DIR}/mpprof_port_${MPPROF_PORT}.c
)

if(MPPROF_TRANSPORT STREQUAL "uart")
    target_sources(usermod_mpprof INTERFACE ${CMAKE_CURRENT_LIST_DIR}/mpprof_uart.c)
    target_compile_definitions(usermod_mpprof INTERFACE MPPROF_TRANSPORT_UART=1)
else()
    target_sources(usermod_mpprof INTERFACE ${CMAKE_CURRENT_LIST_DIR}/mpprof_rtt.c)
endif()

if(NOT DEFINED MPPROF_LINE_TIME AND DEFINED ENV{MPPROF_LINE_TIME})
    set(MPPROF_LINE_TIME "$ENV{MPPROF_LINE_TIME}")
endif()
if(MPPROF_LINE_TIME)
    target_sources(usermod_mpprof INTERFACE ${CMAKE_CURRENT_LIST_DIR}/mpprof_line.c)
    target_compile_definitions(usermod_mpprof INTERFACE MPPROF_LINE_TIME=1)
endif()

set(_mpprof_inc ${CMAKE_CURRENT_LIST_DIR})
if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/../ports/boards/mpprof_board_config.h)
    get_filename_component(_mpprof_boards ${CMAKE_CURRENT_LIST_DIR}/../ports/boards ABSOLUTE)
    list(APPEND _mpprof_inc ${_mpprof_boards})
elseif(NOT EXISTS ${CMAKE_CURRENT_LIST_DIR}/mpprof_board_config.h)
    message(FATAL_ERROR "mpprof_board_config.h is neither next to ${CMAKE_CURRENT_LIST_FILE} nor in ../ports/boards")
endif()
target_include_directories(usermod_mpprof INTERFACE ${_mpprof_inc})

# The configuration wrapper, for every file of the firmware: the firmware
# target links usermod, so it gets this definition; the qstr and root-pointer
# scans take their definitions from MICROPY_CPP_DEF_EXTRA.
target_compile_definitions(usermod_mpprof INTERFACE MP_CONFIGFILE=\"mpprof_board_config.h\")
list(APPEND MICROPY_CPP_DEF_EXTRA MP_CONFIGFILE=\"mpprof_board_config.h\")
list(APPEND MICROPY_CPP_INC_EXTRA ${_mpprof_inc})

target_link_libraries(usermod INTERFACE usermod_mpprof)
