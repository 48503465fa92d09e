// Copyright: passthrough.gpu contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package main

// The GPUs every simulated ESXi host gets, and the per-host passthrough and graphics state that
// the HostPciPassthruSystem, the HostGraphicsManager, host reboots, QueryConfigTarget and the VM
// guard all read and write.

import (
	"fmt"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// gpuDevice is one PCI device added to each host, with what ESXi knows about it besides the
// HostPciDevice record.
type gpuDevice struct {
	pci      types.HostPciDevice
	capable  bool     // passthruCapable: ESXi says false for devices the host itself uses
	memoryKB int64    // frame buffer, reported as graphicsInfo.memorySizeInKB
	bar1     int64    // size of the big 64-bit prefetchable BAR; no vSphere API property carries BAR sizes, so it is documentation only
	profiles []string // vGPU profiles the device offers while its graphics type is sharedDirect
}

// s16 turns a PCI id into the signed 16-bit value the API uses (0x10de is 4318, 0x8086 is -32634).
func s16(v uint16) int16 { return int16(v) }

// gpuDevices are realistic devices: passthrough-capable data-centre GPUs (NVIDIA with vGPU
// profiles, Intel without) and the server's on-board VGA, which drives the host console and so is
// never passthrough-capable.
var gpuDevices = []gpuDevice{
	{
		pci: types.HostPciDevice{
			Id: "0000:3b:00.0", ClassId: s16(0x0302), Bus: 0x3b,
			VendorId: s16(0x10de), SubVendorId: s16(0x10de), VendorName: "NVIDIA Corporation",
			DeviceId: s16(0x20f1), SubDeviceId: s16(0x145f), DeviceName: "GA100 [A100 PCIe 40GB]",
		},
		capable: true, memoryKB: 40 << 20, bar1: 64 << 30,
		profiles: []string{"grid_a100-4c", "grid_a100-5c", "grid_a100-8c", "grid_a100-10c", "grid_a100-20c", "grid_a100-40c"},
	},
	{
		pci: types.HostPciDevice{
			Id: "0000:af:00.0", ClassId: s16(0x0302), Bus: 0xaf,
			VendorId: s16(0x10de), SubVendorId: s16(0x10de), VendorName: "NVIDIA Corporation",
			DeviceId: s16(0x1eb8), SubDeviceId: s16(0x12a2), DeviceName: "TU104GL [Tesla T4]",
		},
		capable: true, memoryKB: 16 << 20, bar1: 256 << 20,
		profiles: []string{"grid_t4-1b", "grid_t4-2b", "grid_t4-1q", "grid_t4-2q", "grid_t4-4q", "grid_t4-8q",
			"grid_t4-16q", "grid_t4-4c", "grid_t4-8c", "grid_t4-16c"},
	},
	{
		// Intel's vendor id is above 0x7fff: the API shows it as -32634, and the dynamic
		// passthrough lists and allowed devices use 0x8086. No NVIDIA vGPU profiles.
		pci: types.HostPciDevice{
			Id: "0000:d8:00.0", ClassId: s16(0x0380), Bus: 0xd8,
			VendorId: s16(0x8086), SubVendorId: s16(0x8086), VendorName: "Intel Corporation",
			DeviceId: s16(0x56c0), SubDeviceId: s16(0x4905), DeviceName: "ATS-M [Data Center GPU Flex 170]",
		},
		capable: true, memoryKB: 16 << 20, bar1: 16 << 30,
	},
	{
		pci: types.HostPciDevice{
			// 02: stock vcsim already has a device (PVSCSI) at 0000:03:00.0
			Id: "0000:02:00.0", ClassId: s16(0x0300), Bus: 0x02,
			VendorId: s16(0x102b), SubVendorId: s16(0x1028), VendorName: "Matrox Electronics Systems Ltd.",
			DeviceId: s16(0x0536), SubDeviceId: s16(0x0737), DeviceName: "Integrated Matrox G200eW3 Graphics Controller",
		},
		capable: false, memoryKB: 16 << 10, bar1: 16 << 20,
	},
}

// extraA100Buses are where an 8-GPU server has its other A100s (three GPUs are in gpuDevices).
var extraA100Buses = []uint8{0x07, 0x4e, 0x87, 0x90, 0xb7}

// addA100s adds n more A100s to every host (before the hosts are made), so a benchmark can ask
// for 8 passthrough-capable GPUs; the default layout, which the tests name, stays as it is.
func addA100s(n int) error {
	if n < 0 || n > len(extraA100Buses) {
		return fmt.Errorf("-more-a100 must be 0..%d, not %d", len(extraA100Buses), n)
	}
	for _, bus := range extraA100Buses[:n] {
		d := gpuDevices[0] // the A100
		d.pci.Id = fmt.Sprintf("0000:%02x:00.0", bus)
		d.pci.Bus = bus
		gpuDevices = append(gpuDevices, d)
	}
	return nil
}

func findGPU(id string) *gpuDevice {
	for i := range gpuDevices {
		if gpuDevices[i].pci.Id == id {
			return &gpuDevices[i]
		}
	}
	return nil
}

// Graphics types as the API spells them (HostGraphicsInfo.graphicsType, HostGraphicsConfig).
const (
	gfxBasic        = "basic"
	gfxShared       = "shared"
	gfxDirect       = "direct"
	gfxSharedDirect = "sharedDirect"
)

// HostPciPassthruInfo is types.HostPciPassthruInfo with the hardwareLabel (API 7.0.2) that
// govmomi 0.24.2's type lacks. The encoder names an element's xsi:type after the Go type's name,
// so this type, named as the vSphere one, reaches clients as a HostPciPassthruInfo with a
// hardwareLabel element after passthruActive, where the WSDL has it.
type HostPciPassthruInfo struct {
	types.HostPciPassthruInfo
	HardwareLabel string `xml:"hardwareLabel,omitempty"`
}

// noApplyNow are the PCI ids whose applyNow the hosts ignore (-no-apply-now): ESXi does so for a
// device it cannot hot-(un)plug, whose change is then active only after a reboot.
var noApplyNow = map[string]bool{}

// gpuHost is the state of one host. Its mutex is also the lock the simulator takes around calls on
// the host's two managers (they implement sync.Locker through it), so a manager method can update
// both managers' properties at once without a lock-order problem. Lock order: gpuHost, then the
// HostSystem or a VM; never the other way round.
type gpuHost struct {
	sync.Mutex
	host     types.ManagedObjectReference
	passthru *pciPassthruSystem
	graphics *graphicsManager
	running  map[string]string // per vGPU-capable GPU, the configured graphics type as of the last boot
}

var gpuHosts = struct {
	sync.Mutex
	m map[types.ManagedObjectReference]*gpuHost
}{m: map[types.ManagedObjectReference]*gpuHost{}}

func gpuHostOf(ref types.ManagedObjectReference) *gpuHost {
	gpuHosts.Lock()
	defer gpuHosts.Unlock()
	return gpuHosts.m[ref]
}

// attachHost gives a simulated host the GPUs and the two managers. Idempotent: the registry
// handler sees a host again whenever the simulator re-registers it.
func attachHost(host *simulator.HostSystem) {
	gpuHosts.Lock()
	if _, ok := gpuHosts.m[host.Self]; ok {
		gpuHosts.Unlock()
		return
	}
	gh := &gpuHost{host: host.Self, running: map[string]string{}}
	gpuHosts.m[host.Self] = gh
	gpuHosts.Unlock()

	// The registry would name the types after the Go types; clients need the vSphere ones.
	gh.passthru = &pciPassthruSystem{gh: gh}
	gh.passthru.Self.Type = "HostPciPassthruSystem"
	gh.graphics = &graphicsManager{gh: gh}
	gh.graphics.Self.Type = "HostGraphicsManager"

	simulator.Map.WithLock(host, func() {
		// NewHostSystem shares the template's PciDevice slice between hosts: give each its own.
		hw := *host.Hardware
		hw.PciDevice = append([]types.HostPciDevice(nil), host.Hardware.PciDevice...)
		for _, d := range gpuDevices {
			hw.PciDevice = append(hw.PciDevice, d.pci)
		}
		host.Hardware = &hw
		for _, d := range hw.PciDevice {
			gpu := findGPU(d.Id)
			gh.passthru.PciPassthruInfo = append(gh.passthru.PciPassthruInfo, &HostPciPassthruInfo{
				HostPciPassthruInfo: types.HostPciPassthruInfo{
					Id:              d.Id,
					DependentDevice: d.Id, // no device here depends on another function
					PassthruCapable: gpu != nil && gpu.capable,
				},
			})
		}
		if host.Config.GraphicsConfig != nil {
			cfg := *host.Config.GraphicsConfig
			gh.graphics.GraphicsConfig = &cfg
		} else {
			gh.graphics.GraphicsConfig = &types.HostGraphicsConfig{
				HostDefaultGraphicsType: gfxShared, SharedPassthruAssignmentPolicy: "performance",
			}
		}
	})
	gh.Lock()
	gh.boot() // the host was booted with the configuration it has
	gh.Unlock()

	// Unique references: the ESX template names these managers ha-pcipassthrusystem and
	// ha-graphics-manager for every host, and nothing answers at those names in stock vcsim.
	passthruRef := simulator.Map.Put(gh.passthru).Reference()
	graphicsRef := simulator.Map.Put(gh.graphics).Reference()
	simulator.Map.WithLock(host, func() {
		host.ConfigManager.PciPassthruSystem = &passthruRef
		host.ConfigManager.GraphicsManager = &graphicsRef
	})

	gh.Lock()
	gh.publish()
	gh.Unlock()
}

// detachHost drops a destroyed host's managers.
func detachHost(ref types.ManagedObjectReference) {
	gpuHosts.Lock()
	gh := gpuHosts.m[ref]
	delete(gpuHosts.m, ref)
	gpuHosts.Unlock()
	if gh != nil {
		simulator.Map.Remove(gh.passthru.Self)
		simulator.Map.Remove(gh.graphics.Self)
	}
}

// passthruInfo returns the entry for a PCI id, or nil. Caller holds gh.
func (gh *gpuHost) passthruInfo(id string) *types.HostPciPassthruInfo {
	if info := gh.labeledInfo(id); info != nil {
		return &info.HostPciPassthruInfo
	}
	return nil
}

// labeledInfo is passthruInfo with the hardware label. Caller holds gh.
func (gh *gpuHost) labeledInfo(id string) *HostPciPassthruInfo {
	for _, b := range gh.passthru.PciPassthruInfo {
		if info, ok := b.(*HostPciPassthruInfo); ok && info.Id == id {
			return info
		}
	}
	return nil
}

// hardwareLabel is the label set for a device by UpdatePassthruConfig ("" for none). Caller holds gh.
func (gh *gpuHost) hardwareLabel(id string) string {
	if info := gh.labeledInfo(id); info != nil {
		return info.HardwareLabel
	}
	return ""
}

// setLabels stores hardware labels ({PCI id: label}) sent with a successful UpdatePassthruConfig.
// Caller holds gh.
func (gh *gpuHost) setLabels(labels map[string]string) {
	for id, label := range labels {
		if info := gh.labeledInfo(id); info != nil {
			info.HardwareLabel = label
		}
	}
	gh.publish()
}

// configuredType is the graphics type the configuration gives a vGPU-capable GPU. Caller holds gh.
func (gh *gpuHost) configuredType(d *gpuDevice) string {
	for _, t := range gh.graphics.GraphicsConfig.DeviceType {
		if t.DeviceId == d.pci.Id {
			return t.GraphicsType
		}
	}
	return gh.graphics.GraphicsConfig.HostDefaultGraphicsType
}

// boot makes the configured graphics types the ones the GPUs run in: ESXi applies a new
// graphics configuration when Xorg restarts, which a host reboot does. Caller holds gh.
func (gh *gpuHost) boot() {
	for i := range gpuDevices {
		if d := &gpuDevices[i]; len(d.profiles) > 0 {
			gh.running[d.pci.Id] = gh.configuredType(d)
		}
	}
	gh.publish()
}

// graphicsType is the type a GPU runs in now: direct while its passthrough is active, basic
// without vGPU support, else its configured type as of the last boot. Caller holds gh.
func (gh *gpuHost) graphicsType(d *gpuDevice) string {
	if info := gh.passthruInfo(d.pci.Id); info != nil && info.PassthruActive {
		return gfxDirect
	}
	if len(d.profiles) == 0 {
		return gfxBasic
	}
	if t, ok := gh.running[d.pci.Id]; ok {
		return t
	}
	return gh.configuredType(d)
}

// offeredProfiles are the vGPU profiles of the GPUs now in sharedDirect mode, in the device
// table's order. Caller holds gh.
func (gh *gpuHost) offeredProfiles() []string {
	var out []string
	for i := range gpuDevices {
		if gh.graphicsType(&gpuDevices[i]) == gfxSharedDirect {
			out = append(out, gpuDevices[i].profiles...)
		}
	}
	return out
}

// systemID is what QueryConfigTarget reports as pciPassthrough[].systemId for this host.
func (gh *gpuHost) systemID() string {
	var id string
	if host, ok := simulator.Map.Get(gh.host).(*simulator.HostSystem); ok {
		simulator.Map.WithLock(host, func() { id = host.Hardware.SystemInfo.Uuid })
	}
	return id
}

// publish recomputes what derives from the passthrough and graphics state and copies it where
// clients read it: the managers' properties, host.config and host.summary.rebootRequired. Fields
// are assigned directly rather than through Map.Update: clients read them with RetrieveProperties,
// and only tasks are watched with WaitForUpdates. Caller holds gh.
func (gh *gpuHost) publish() {
	var infos []types.HostGraphicsInfo
	for i := range gpuDevices {
		d := &gpuDevices[i]
		infos = append(infos, types.HostGraphicsInfo{
			DeviceName: d.pci.DeviceName, VendorName: d.pci.VendorName, PciId: d.pci.Id,
			GraphicsType: gh.graphicsType(d), MemorySizeInKB: d.memoryKB,
		})
	}
	offered := gh.offeredProfiles()
	var caps []types.HostSharedGpuCapabilities
	for _, p := range offered {
		caps = append(caps, types.HostSharedGpuCapabilities{Vgpu: p, SuspendSupported: true, MigrateSupported: true})
	}
	gh.graphics.GraphicsInfo = infos
	gh.graphics.SharedPassthruGpuTypes = offered
	gh.graphics.SharedGpuCapabilities = caps

	pending := false
	var passthru []types.BaseHostPciPassthruInfo
	for _, b := range gh.passthru.PciPassthruInfo {
		info, ok := b.(*HostPciPassthruInfo)
		if !ok {
			continue
		}
		copied := *info // a copy: the host is read under its own lock
		pending = pending || copied.PassthruEnabled != copied.PassthruActive
		passthru = append(passthru, &copied)
	}
	cfg := *gh.graphics.GraphicsConfig
	cfg.DeviceType = append([]types.HostGraphicsConfigDeviceType(nil), cfg.DeviceType...)

	host, ok := simulator.Map.Get(gh.host).(*simulator.HostSystem)
	if !ok {
		return
	}
	simulator.Map.WithLock(host, func() {
		host.Config.PciPassthruInfo = passthru
		host.Config.GraphicsInfo = append([]types.HostGraphicsInfo(nil), infos...)
		host.Config.GraphicsConfig = &cfg
		host.Config.SharedPassthruGpuTypes = append([]string(nil), offered...)
		host.Config.SharedGpuCapabilities = append([]types.HostSharedGpuCapabilities(nil), caps...)
		host.Summary.RebootRequired = pending
	})
}

// installer hooks the extension into the registry, so hosts and environment browsers created
// after startup (AddStandaloneHost_Task, CreateClusterEx) get it too.
type installer struct{}

func (installer) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "PassthroughGpuInstaller", Value: "passthrough-gpu-installer"}
}

func (installer) PutObject(obj mo.Reference) {
	switch o := obj.(type) {
	case *simulator.HostSystem:
		attachHost(o)
	case *simulator.EnvironmentBrowser:
		simulator.Map.Put(&envBrowser{EnvironmentBrowser: *o})
	}
}

func (installer) UpdateObject(mo.Reference, []types.PropertyChange) {}

func (installer) RemoveObject(ref types.ManagedObjectReference) {
	if ref.Type == "HostSystem" {
		detachHost(ref)
	}
}

// install extends the objects the model created, then watches the registry for new ones.
func install() {
	for _, e := range simulator.Map.All("HostSystem") {
		if host, ok := e.(*simulator.HostSystem); ok {
			attachHost(host)
		}
	}
	var browsers []types.ManagedObjectReference
	for _, e := range simulator.Map.All("ComputeResource") {
		if cr, ok := e.(*mo.ComputeResource); ok && cr.EnvironmentBrowser != nil {
			browsers = append(browsers, *cr.EnvironmentBrowser)
		}
	}
	for _, e := range simulator.Map.All("ClusterComputeResource") {
		if cr, ok := e.(*simulator.ClusterComputeResource); ok && cr.EnvironmentBrowser != nil {
			browsers = append(browsers, *cr.EnvironmentBrowser)
		}
	}
	for _, ref := range browsers {
		if b, ok := simulator.Map.Get(ref).(*simulator.EnvironmentBrowser); ok {
			simulator.Map.Put(&envBrowser{EnvironmentBrowser: *b})
		}
	}
	simulator.Map.AddHandler(installer{})
}
