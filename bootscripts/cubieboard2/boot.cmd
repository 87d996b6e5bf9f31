# Cubieboard2: boot Xen with a Linux Domain-0 from the SD card (the ERIKA Enterprise Xen guide).
#
# Make the image U-Boot runs by itself at power-on:
#   mkimage -C none -A arm -T script -d boot.cmd boot.scr
# or run this file directly on the xenpy board:
#   xenpy boot --sd examples/cubieboard2/sd bootscripts/cubieboard2/boot.cmd
#
# RAM is 1 GiB at 0x40000000; Xen, its device tree and the dom0 kernel go near the top of it.
setenv xen_addr_r    0x7ea00000
setenv fdt_addr      0x7ec00000
setenv kernel_addr_r 0x7e000000
# Use the device tree where it is loaded: Xen finds its modules through it.
setenv fdt_high      0xffffffff

# Xen's command line: its console on UART0, Domain-0 with 128 MB and one vCPU pinned to CPU 0
# (the other CPU is left for the ERIKA RTOS domain).
setenv bootargs "console=dtuart dtuart=/soc@01c00000/serial@01c28000 dom0_mem=128M dom0_max_vcpus=1 dom0_vcpus_pin"

# The hypervisor.
fatload mmc 0 ${xen_addr_r} /xen

# The board's device tree, opened with room to grow.
fatload mmc 0 ${fdt_addr} /sun7i-a20-cubieboard2.dtb
fdt addr ${fdt_addr} 0x40000
fdt resize
fdt chosen
fdt set /chosen \#address-cells <1>
fdt set /chosen \#size-cells <1>

# Domain-0's kernel, described to Xen as /chosen/module@0.
fatload mmc 0 ${kernel_addr_r} /zImage
fdt mknod /chosen module@0
fdt set /chosen/module@0 compatible "xen,linux-zimage" "xen,multiboot-module"
fdt set /chosen/module@0 reg <${kernel_addr_r} 0x${filesize}>
fdt set /chosen/module@0 bootargs "console=hvc0 ro root=/dev/mmcblk0p2 rootwait clk_ignore_unused"

bootz ${xen_addr_r} - ${fdt_addr}
