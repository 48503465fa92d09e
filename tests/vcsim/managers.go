// Copyright: passthrough.gpu contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package main

// HostPciPassthruSystem and HostGraphicsManager, which stock vcsim does not have. The simulator
// dispatches a SOAP call by reflection to the method of the same name on the object registered
// under the call's _this, so these are plain types with methods, registered per host.

import (
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// hostName is the host's inventory name, for messages.
func (gh *gpuHost) hostName() string {
	if host, ok := simulator.Map.Get(gh.host).(*simulator.HostSystem); ok {
		return host.Name
	}
	return gh.host.Value
}

// hostConfigFault is the fault hostd raises for a passthrough configuration it refuses.
func hostConfigFault(msg string) *soap.Fault {
	return simulator.Fault(msg, &types.HostConfigFault{
		VimFault: types.VimFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "com.passthrough-gpu.vcsim", Message: msg}},
		}},
	})
}

type pciPassthruSystem struct {
	mo.HostPciPassthruSystem // first field: the property collector reads the embedded mo type

	gh *gpuHost
}

// Lock and Unlock make the simulator take the host's gpuHost lock around calls on this object.
func (p *pciPassthruSystem) Lock()   { p.gh.Lock() }
func (p *pciPassthruSystem) Unlock() { p.gh.Unlock() }

// UpdatePassthruConfig applies a batch all or nothing (real hostd may apply part of a batch before
// it fails; the simulator validates the whole batch first). passthruEnabled changes at once;
// passthruActive follows it only with applyNow=true and for a device not in -no-apply-now,
// otherwise at the next host reboot (RebootHost_Task). hardwareLabel, which govmomi 0.24.2's
// request type drops, is stored by the guard (guard.go) once this call succeeded. The simulator
// holds gh during the call.
func (p *pciPassthruSystem) UpdatePassthruConfig(req *types.UpdatePassthruConfig) soap.HasFault {
	body := new(methods.UpdatePassthruConfigBody)
	gh := p.gh
	for _, b := range req.Config {
		cfg := b.GetHostPciPassthruConfig()
		info := gh.passthruInfo(cfg.Id)
		switch {
		case info == nil:
			body.Fault_ = hostConfigFault(fmt.Sprintf("No PCI device %s on host %s.", cfg.Id, gh.hostName()))
		case cfg.PassthruEnabled && !info.PassthruCapable:
			body.Fault_ = hostConfigFault(fmt.Sprintf(
				"Cannot enable passthrough for PCI device %s on host %s: the device is not passthrough capable.", cfg.Id, gh.hostName()))
		case !cfg.PassthruEnabled && info.PassthruActive && isTrue(cfg.ApplyNow) && !noApplyNow[cfg.Id]:
			if vm := gh.vmUsing(cfg.Id, ""); vm != "" {
				body.Fault_ = hostConfigFault(fmt.Sprintf(
					"Cannot disable passthrough for PCI device %s now: it is in use by the powered-on VM %s.", cfg.Id, vm))
			}
		}
		if body.Fault_ != nil {
			return body
		}
	}
	for _, b := range req.Config {
		cfg := b.GetHostPciPassthruConfig()
		info := gh.passthruInfo(cfg.Id)
		info.PassthruEnabled = cfg.PassthruEnabled
		if isTrue(cfg.ApplyNow) && !noApplyNow[cfg.Id] {
			info.PassthruActive = cfg.PassthruEnabled
		}
	}
	gh.publish()
	body.Res = new(types.UpdatePassthruConfigResponse)
	return body
}

// Refresh is part of the managed object's API; the state here is always current.
func (p *pciPassthruSystem) Refresh(*types.Refresh) soap.HasFault {
	return &methods.RefreshBody{Res: new(types.RefreshResponse)}
}

// activate makes every pending passthrough change and the graphics configuration active, as a
// host reboot does. Caller holds gh.
func (gh *gpuHost) activate() {
	for _, b := range gh.passthru.PciPassthruInfo {
		info := b.GetHostPciPassthruInfo()
		info.PassthruActive = info.PassthruEnabled
	}
	gh.boot()
}

type graphicsManager struct {
	mo.HostGraphicsManager

	gh *gpuHost
}

func (g *graphicsManager) Lock()   { g.gh.Lock() }
func (g *graphicsManager) Unlock() { g.gh.Unlock() }

func invalidArgument(property, msg string) *soap.Fault {
	return simulator.Fault(msg, &types.InvalidArgument{InvalidProperty: property})
}

// UpdateGraphicsConfig sets the host default graphics type and assignment policy, and per-device
// types by deviceId (entries for other devices are kept). As on ESXi, graphicsConfig changes at
// once, but the type a GPU runs in (graphicsInfo) and the vGPU profiles it offers follow it only
// after a host reboot (RebootHost_Task; ESXi: also an Xorg restart, not simulated).
func (g *graphicsManager) UpdateGraphicsConfig(req *types.UpdateGraphicsConfig) soap.HasFault {
	body := new(methods.UpdateGraphicsConfigBody)
	cfg := req.Config
	validType := func(t string) bool { return t == gfxShared || t == gfxSharedDirect }
	if !validType(cfg.HostDefaultGraphicsType) {
		body.Fault_ = invalidArgument("config.hostDefaultGraphicsType", fmt.Sprintf(
			"hostDefaultGraphicsType %q is not one of shared, sharedDirect.", cfg.HostDefaultGraphicsType))
		return body
	}
	if p := cfg.SharedPassthruAssignmentPolicy; p != "performance" && p != "consolidation" {
		body.Fault_ = invalidArgument("config.sharedPassthruAssignmentPolicy", fmt.Sprintf(
			"sharedPassthruAssignmentPolicy %q is not one of performance, consolidation.", p))
		return body
	}
	for _, t := range cfg.DeviceType {
		if d := findGPU(t.DeviceId); d == nil || len(d.profiles) == 0 {
			body.Fault_ = invalidArgument("config.deviceType.deviceId", fmt.Sprintf(
				"PCI device %s on host %s is not a GPU that supports shared graphics.", t.DeviceId, g.gh.hostName()))
			return body
		}
		if !validType(t.GraphicsType) {
			body.Fault_ = invalidArgument("config.deviceType.graphicsType", fmt.Sprintf(
				"graphicsType %q for %s is not one of shared, sharedDirect.", t.GraphicsType, t.DeviceId))
			return body
		}
	}

	next := &types.HostGraphicsConfig{
		HostDefaultGraphicsType:        cfg.HostDefaultGraphicsType,
		SharedPassthruAssignmentPolicy: cfg.SharedPassthruAssignmentPolicy,
	}
	merged := map[string]string{}
	for _, t := range g.GraphicsConfig.DeviceType {
		merged[t.DeviceId] = t.GraphicsType
	}
	for _, t := range cfg.DeviceType {
		merged[t.DeviceId] = t.GraphicsType
	}
	for i := range gpuDevices { // the device table's order keeps the result stable
		if t, ok := merged[gpuDevices[i].pci.Id]; ok {
			next.DeviceType = append(next.DeviceType, types.HostGraphicsConfigDeviceType{DeviceId: gpuDevices[i].pci.Id, GraphicsType: t})
		}
	}
	g.GraphicsConfig = next
	g.gh.publish()
	body.Res = new(types.UpdateGraphicsConfigResponse)
	return body
}

func (g *graphicsManager) RefreshGraphicsManager(*types.RefreshGraphicsManager) soap.HasFault {
	return &methods.RefreshGraphicsManagerBody{Res: new(types.RefreshGraphicsManagerResponse)}
}

// IsSharedGraphicsActive is true while a GPU serves vSGA (graphics type shared).
func (g *graphicsManager) IsSharedGraphicsActive(*types.IsSharedGraphicsActive) soap.HasFault {
	active := false
	for _, info := range g.GraphicsInfo {
		active = active || info.GraphicsType == gfxShared
	}
	return &methods.IsSharedGraphicsActiveBody{Res: &types.IsSharedGraphicsActiveResponse{Returnval: active}}
}

func isTrue(b *bool) bool { return b != nil && *b }
