// Copyright: passthrough.gpu contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package main

// QueryConfigTarget with the PCI lists ESXi returns and stock vcsim leaves out.
//
// envBrowser replaces each stock EnvironmentBrowser in the registry under the same reference. It
// embeds the stock type by value, not by pointer: the property collector finds an object's
// properties by following first fields down to the mo type, which a pointer would break.

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type envBrowser struct {
	simulator.EnvironmentBrowser
}

// hosts are the hosts of the compute resource this browser belongs to.
func (b *envBrowser) hosts() []types.ManagedObjectReference {
	for _, e := range simulator.Map.All("ComputeResource") {
		if cr, ok := e.(*mo.ComputeResource); ok && cr.EnvironmentBrowser != nil && *cr.EnvironmentBrowser == b.Self {
			return cr.Host
		}
	}
	for _, e := range simulator.Map.All("ClusterComputeResource") {
		if cr, ok := e.(*simulator.ClusterComputeResource); ok && cr.EnvironmentBrowser != nil && *cr.EnvironmentBrowser == b.Self {
			return cr.Host
		}
	}
	return nil
}

// QueryConfigTarget keeps the stock answer and adds, per host:
//   - pciPassthrough: devices whose passthrough is active, with the host's systemId (static DirectPath);
//   - dynamicPassthrough: the same devices by vendor and device id (Dynamic DirectPath); the ids are
//     the unsigned 16-bit values, as VirtualPCIPassthroughAllowedDevice takes them, and customLabel
//     the device's hardware label (set with UpdatePassthruConfig), as ESXi 7.0.2 and later report it;
//   - sharedGpuPassthroughTypes: vGPU profiles of the GPUs now in sharedDirect mode.
func (b *envBrowser) QueryConfigTarget(ctx *simulator.Context, req *types.QueryConfigTarget) soap.HasFault {
	res := b.EnvironmentBrowser.QueryConfigTarget(ctx, req)
	body, ok := res.(*methods.QueryConfigTargetBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	target := body.Res.Returnval

	hosts := b.hosts()
	if req.Host != nil {
		hosts = []types.ManagedObjectReference{*req.Host}
	}
	seenProfile := map[string]bool{}
	for _, ref := range hosts {
		gh := gpuHostOf(ref)
		if gh == nil {
			continue
		}
		systemID := gh.systemID()
		host, ok := simulator.Map.Get(ref).(*simulator.HostSystem)
		if !ok {
			continue
		}
		var devices []types.HostPciDevice
		simulator.Map.WithLock(host, func() { devices = append(devices, host.Hardware.PciDevice...) })

		gh.Lock()
		for _, d := range devices {
			if info := gh.passthruInfo(d.Id); info == nil || !info.PassthruActive {
				continue
			}
			target.PciPassthrough = append(target.PciPassthrough, &types.VirtualMachinePciPassthroughInfo{
				VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: d.DeviceName},
				PciDevice:                d,
				SystemId:                 systemID,
			})
			target.DynamicPassthrough = append(target.DynamicPassthrough, types.VirtualMachineDynamicPassthroughInfo{
				VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: d.DeviceName},
				VendorName:               d.VendorName,
				DeviceName:               d.DeviceName,
				VendorId:                 int32(uint16(d.VendorId)),
				DeviceId:                 int32(uint16(d.DeviceId)),
				CustomLabel:              gh.hardwareLabel(d.Id),
			})
		}
		for _, p := range gh.offeredProfiles() {
			if !seenProfile[p] {
				seenProfile[p] = true
				target.SharedGpuPassthroughTypes = append(target.SharedGpuPassthroughTypes, types.VirtualMachinePciSharedGpuPassthroughInfo{
					VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: p},
					Vgpu:                     p,
				})
			}
		}
		gh.Unlock()
	}
	return body
}
