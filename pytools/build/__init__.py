"""Building the firmware (offline, arm-none-eabi-gcc) and the host twin (native gcc)."""
