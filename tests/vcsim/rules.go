// Copyright: passthrough.gpu contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package main

// What real ESXi refuses about PCI passthrough VMs and stock vcsim accepts. Each check returns a
// refusal (the fault and its message) or nil; guard.go turns a refusal into a failed task.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/types"
)

type refusal struct {
	fault types.BaseMethodFault
	msg   string
}

type ptKind int

const (
	ptStatic  ptKind = iota // DirectPath I/O: VirtualPCIPassthroughDeviceBackingInfo
	ptDynamic               // Dynamic DirectPath: VirtualPCIPassthroughDynamicBackingInfo
	ptVgpu                  // NVIDIA vGPU: VirtualPCIPassthroughVmiopBackingInfo
	ptOther
)

type ptDevice struct {
	kind    ptKind
	static  *types.VirtualPCIPassthroughDeviceBackingInfo
	dynamic *types.VirtualPCIPassthroughDynamicBackingInfo
	vgpu    string
}

// classify tells whether a virtual device is a PCI passthrough device and of which kind.
func classify(dev types.BaseVirtualDevice) (ptDevice, bool) {
	pci, ok := dev.(*types.VirtualPCIPassthrough)
	if !ok {
		return ptDevice{}, false
	}
	switch b := pci.Backing.(type) {
	case *types.VirtualPCIPassthroughDeviceBackingInfo:
		return ptDevice{kind: ptStatic, static: b}, true
	case *types.VirtualPCIPassthroughDynamicBackingInfo:
		return ptDevice{kind: ptDynamic, dynamic: b}, true
	case *types.VirtualPCIPassthroughVmiopBackingInfo:
		return ptDevice{kind: ptVgpu, vgpu: b.Vgpu}, true
	}
	return ptDevice{kind: ptOther}, true
}

// vmFacts is what the checks need of a VM, copied under the VM's lock so that no VM lock is held
// while a gpuHost lock is taken (the lock order is gpuHost, then VM).
type vmFacts struct {
	name        string
	host        *types.ManagedObjectReference
	power       types.VirtualMachinePowerState
	version     string
	memoryMB    int64
	reservation int64
	locked      bool
	devices     []types.BaseVirtualDevice
}

func readVM(ref types.ManagedObjectReference) *vmFacts {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return nil
	}
	var f vmFacts
	simulator.Map.WithLock(vm, func() {
		f.name = vm.Name
		f.host = vm.Runtime.Host
		f.power = vm.Runtime.PowerState
		if vm.Config == nil {
			return
		}
		f.version = vm.Config.Version
		f.memoryMB = int64(vm.Config.Hardware.MemoryMB)
		if a := vm.Config.MemoryAllocation; a != nil && a.Reservation != nil {
			f.reservation = *a.Reservation
		}
		f.locked = isTrue(vm.Config.MemoryReservationLockedToMax)
		f.devices = append(f.devices, vm.Config.Hardware.Device...)
	})
	return &f
}

func hwVersion(v string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(v, "vmx-"))
	return n
}

func msgFault(f types.BaseMethodFault, msg string) *refusal {
	f.GetMethodFault().FaultMessage = []types.LocalizableMessage{{Key: "com.passthrough-gpu.vcsim", Message: msg}}
	return &refusal{fault: f, msg: msg}
}

func invalidSpec(index int, property string) types.InvalidDeviceSpec {
	return types.InvalidDeviceSpec{InvalidVmConfig: types.InvalidVmConfig{Property: property}, DeviceIndex: int32(index)}
}

// checkDeviceSet applies the rules about the passthrough devices a VM would have: no DirectPath
// (static or dynamic) together with vGPU, and Dynamic DirectPath only from hardware version 17.
// index is the deviceChange entry to blame.
func checkDeviceSet(devices map[string]ptDevice, version string, index int) *refusal {
	direct, vgpu, dynamic := false, false, false
	for _, d := range devices {
		direct = direct || d.kind == ptStatic || d.kind == ptDynamic
		dynamic = dynamic || d.kind == ptDynamic
		vgpu = vgpu || d.kind == ptVgpu
	}
	if direct && vgpu {
		f := &types.InvalidDeviceSpec{InvalidVmConfig: types.InvalidVmConfig{Property: "virtualDeviceSpec.device.backing"}, DeviceIndex: int32(index)}
		return msgFault(f, "A VM cannot have both a DirectPath I/O PCI passthrough device (static or dynamic) and an NVIDIA vGPU device.")
	}
	if dynamic && hwVersion(version) < 17 {
		f := &types.DeviceUnsupportedForVmVersion{InvalidDeviceSpec: invalidSpec(index, "virtualDeviceSpec.device.backing"),
			CurrentVersion: version, ExpectedVersion: "vmx-17"}
		return msgFault(f, fmt.Sprintf("Dynamic DirectPath I/O needs virtual hardware version vmx-17 or later; the VM has %s.", version))
	}
	return nil
}

// checkStaticActive: a static DirectPath backing must name a device whose passthrough is active
// on the host.
func checkStaticActive(host *types.ManagedObjectReference, id string, index int) *refusal {
	if host == nil {
		return nil
	}
	gh := gpuHostOf(*host)
	if gh == nil {
		return nil
	}
	gh.Lock()
	info := gh.passthruInfo(id)
	active := info != nil && info.PassthruActive
	gh.Unlock()
	if active {
		return nil
	}
	f := &types.InvalidDeviceBacking{InvalidDeviceSpec: invalidSpec(index, "virtualDeviceSpec.device.backing.id")}
	if info == nil {
		return msgFault(f, fmt.Sprintf("Host %s has no PCI device %s.", gh.hostName(), id))
	}
	return msgFault(f, fmt.Sprintf("PCI device %s is not available for passthrough on host %s: passthrough is not active "+
		"(enable it with UpdatePassthruConfig, then reboot the host or use applyNow).", id, gh.hostName()))
}

// checkReconfigure: (a) no passthrough device change while the VM is not powered off, (c) static
// backings name active devices, and the device-set rules on the VM as it would be afterwards.
func checkReconfigure(req *types.ReconfigVM_Task) *refusal {
	vm := readVM(req.This)
	if vm == nil {
		return nil
	}
	devices := map[string]ptDevice{}
	for _, dev := range vm.devices {
		if pd, ok := classify(dev); ok {
			devices[fmt.Sprintf("key-%d", dev.GetVirtualDevice().Key)] = pd
		}
	}
	touched := -1
	for i, change := range req.Spec.DeviceChange {
		spec := change.GetVirtualDeviceConfigSpec()
		if spec.Device == nil {
			continue
		}
		key := fmt.Sprintf("key-%d", spec.Device.GetVirtualDevice().Key)
		_, wasPT := devices[key]
		pd, isPT := classify(spec.Device)
		if !isPT && !wasPT {
			continue
		}
		if vm.power != types.VirtualMachinePowerStatePoweredOff {
			f := &types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOff, ExistingState: vm.power}
			state := map[types.VirtualMachinePowerState]string{types.VirtualMachinePowerStatePoweredOn: "Powered on"}[vm.power]
			if state == "" {
				state = "Suspended"
			}
			return msgFault(f, fmt.Sprintf("The attempted operation cannot be performed in the current state (%s): "+
				"PCI passthrough and vGPU devices can only be added, changed or removed while VM %s is powered off.", state, vm.name))
		}
		touched = i
		switch spec.Operation {
		case types.VirtualDeviceConfigSpecOperationAdd:
			devices[fmt.Sprintf("new-%d", i)] = pd
		case types.VirtualDeviceConfigSpecOperationEdit:
			delete(devices, key)
			if isPT {
				devices[key] = pd
			}
		case types.VirtualDeviceConfigSpecOperationRemove:
			delete(devices, key)
			continue
		}
		if isPT && pd.kind == ptStatic {
			if r := checkStaticActive(vm.host, pd.static.Id, i); r != nil {
				return r
			}
		}
	}
	if touched < 0 {
		return nil
	}
	return checkDeviceSet(devices, vm.version, touched)
}

// checkCreate applies the device-set rules, and on a given host (c), to a new VM.
func checkCreate(req *types.CreateVM_Task) *refusal {
	devices := map[string]ptDevice{}
	last := -1
	for i, change := range req.Config.DeviceChange {
		spec := change.GetVirtualDeviceConfigSpec()
		if spec.Device == nil || spec.Operation != types.VirtualDeviceConfigSpecOperationAdd {
			continue
		}
		pd, ok := classify(spec.Device)
		if !ok {
			continue
		}
		devices[fmt.Sprintf("new-%d", i)] = pd
		last = i
		if pd.kind == ptStatic {
			if r := checkStaticActive(req.Host, pd.static.Id, i); r != nil {
				return r
			}
		}
	}
	if last < 0 {
		return nil
	}
	version := req.Config.Version
	if version == "" {
		version = esx.HardwareVersion
	}
	return checkDeviceSet(devices, version, last)
}

func vmConfigFault(reason string) *refusal {
	return msgFault(&types.GenericVmConfigFault{Reason: reason}, reason)
}

// parsePciID reads a backing's deviceId: hexadecimal, as the API documents ("20f1"), with or
// without 0x.
func parsePciID(s string) (uint16, bool) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 16)
	return uint16(v), err == nil
}

// checkPowerOn: (b) a full memory reservation, then what the host must offer for each device.
func checkPowerOn(ref types.ManagedObjectReference) *refusal {
	vm := readVM(ref)
	if vm == nil || vm.power == types.VirtualMachinePowerStatePoweredOn {
		return nil // stock vcsim answers these (ManagedObjectNotFound, InvalidPowerState)
	}
	devices := map[string]ptDevice{}
	for _, dev := range vm.devices {
		if pd, ok := classify(dev); ok {
			devices[fmt.Sprintf("key-%d", dev.GetVirtualDevice().Key)] = pd
		}
	}
	if len(devices) == 0 {
		return nil
	}
	if !vm.locked && vm.reservation < vm.memoryMB {
		return vmConfigFault(fmt.Sprintf("Invalid memory setting: memory reservation (sched.mem.min) should be equal to memsize(%d). "+
			"VM %s has PCI passthrough or vGPU devices and a reservation of %d MB: reserve all memory "+
			"(memoryReservationLockedToMax).", vm.memoryMB, vm.name, vm.reservation))
	}
	if r := checkDeviceSet(devices, vm.version, 0); r != nil {
		return r
	}
	if vm.host == nil {
		return nil
	}
	gh := gpuHostOf(*vm.host)
	if gh == nil {
		return nil
	}
	systemID := gh.systemID()
	var devs []types.HostPciDevice
	if host, ok := simulator.Map.Get(*vm.host).(*simulator.HostSystem); ok {
		simulator.Map.WithLock(host, func() { devs = append(devs, host.Hardware.PciDevice...) })
	}
	gh.Lock()
	defer gh.Unlock()
	for _, d := range devices {
		if r := gh.checkDeviceOnHost(d, devs, systemID, ref); r != nil {
			return r
		}
	}
	return nil
}

// checkDeviceOnHost is what the host checks as a device of a powering-on VM is set up. Caller
// holds gh.
func (gh *gpuHost) checkDeviceOnHost(d ptDevice, devs []types.HostPciDevice, systemID string, vm types.ManagedObjectReference) *refusal {
	active := func(id string) bool {
		info := gh.passthruInfo(id)
		return info != nil && info.PassthruActive
	}
	switch d.kind {
	case ptStatic:
		b := d.static
		if !active(b.Id) {
			return vmConfigFault(fmt.Sprintf("Device %s is not available for passthrough on host %s (passthrough is not active).", b.Id, gh.hostName()))
		}
		for _, dev := range devs {
			if dev.Id != b.Id {
				continue
			}
			id, ok := parsePciID(b.DeviceId)
			if b.SystemId != systemID || !ok || id != uint16(dev.DeviceId) || b.VendorId != dev.VendorId {
				return vmConfigFault(fmt.Sprintf("The systemId does not match the current system or the deviceId and vendorId do not "+
					"match the device currently at %s (expected systemId %s, deviceId %04x as hex, vendorId %d as signed 16-bit; "+
					"got systemId %q, deviceId %q, vendorId %d).", b.Id, systemID, uint16(dev.DeviceId), dev.VendorId,
					b.SystemId, b.DeviceId, b.VendorId))
			}
		}
		if other := gh.vmUsing(b.Id, vm.Value); other != "" {
			return vmConfigFault(fmt.Sprintf("Device %s is already in use by the powered-on VM %s.", b.Id, other))
		}
	case ptDynamic:
		// A custom label (ESXi 7.0.2 and later) takes only a device with that hardware label.
		label := d.dynamic.CustomLabel
		for _, dev := range devs {
			for _, a := range d.dynamic.AllowedDevice {
				// 0xffff masks accept both the unsigned ids ESXi documents and signed ones.
				if uint16(a.VendorId) == uint16(dev.VendorId) && uint16(a.DeviceId) == uint16(dev.DeviceId) && active(dev.Id) &&
					(label == "" || gh.hardwareLabel(dev.Id) == label) {
					return nil
				}
			}
		}
		if label != "" {
			return vmConfigFault(fmt.Sprintf("No PCI device with passthrough active and hardware label %q on host %s matches "+
				"the Dynamic DirectPath allowed devices of the VM.", label, gh.hostName()))
		}
		return vmConfigFault(fmt.Sprintf("No PCI device with passthrough active on host %s matches the Dynamic DirectPath "+
			"allowed devices of the VM.", gh.hostName()))
	case ptVgpu:
		for _, p := range gh.offeredProfiles() {
			if p == d.vgpu {
				return nil
			}
		}
		return vmConfigFault(fmt.Sprintf("vGPU profile %q is not offered by host %s: set a GPU's graphics type to sharedDirect "+
			"(HostGraphicsManager.UpdateGraphicsConfig) and use a profile that GPU supports.", d.vgpu, gh.hostName()))
	}
	return nil
}

// vmUsing names a powered-on VM on this host, other than except, with a static DirectPath backing
// for the device, or returns "". Caller holds gh.
func (gh *gpuHost) vmUsing(id string, except string) string {
	host, ok := simulator.Map.Get(gh.host).(*simulator.HostSystem)
	if !ok {
		return ""
	}
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(host, func() { vms = append(vms, host.Vm...) })
	for _, ref := range vms {
		if ref.Value == except {
			continue
		}
		vm := readVM(ref)
		if vm == nil || vm.power != types.VirtualMachinePowerStatePoweredOn {
			continue
		}
		for _, dev := range vm.devices {
			if pd, ok := classify(dev); ok && pd.kind == ptStatic && pd.static.Id == id {
				return vm.name
			}
		}
	}
	return ""
}
