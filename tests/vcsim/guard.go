// Copyright: passthrough.gpu contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

package main

// An http middleware in front of vcsim's SOAP handler: it logs every request's method name, adds
// HostSystem.RebootHost_Task, and refuses the VM changes real ESXi refuses.
//
// Why a middleware rather than wrapping objects: VirtualMachine and HostSystem are asserted to
// their concrete types (Map.Get(ref).(*VirtualMachine)) in many places of the simulator, and its
// property collector follows first fields by value, so neither a pointer wrapper (example_extend_test)
// nor a value wrapper survives the whole API. In front of the handler we decode the request with the
// simulator's own UnmarshalBody, read the registry, and either pass the request on untouched or answer
// it with a task, as vcsim itself would.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type guard struct {
	next http.Handler

	logMu sync.Mutex
	log   *os.File // request log, one method name per line; nil: no log
}

var vimTypes = types.TypeFunc()

// typeFunc resolves xsi:type names, with or without a namespace prefix (as the simulator does).
func typeFunc(name string) (reflect.Type, bool) {
	if t, ok := vimTypes(name); ok {
		return t, ok
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return vimTypes(name[i+1:])
	}
	return nil, false
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
		g.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	method, err := simulator.UnmarshalBody(typeFunc, body)
	if err != nil {
		g.record(soapMethodName(body))
		g.next.ServeHTTP(w, r)
		return
	}
	g.record(method.Name)
	if !g.intercept(w, r, method) {
		g.next.ServeHTTP(w, r)
	}
}

// record appends one line; written at once so a reader counting lines sees every finished request.
func (g *guard) record(name string) {
	if g.log == nil {
		return
	}
	g.logMu.Lock()
	defer g.logMu.Unlock()
	_, _ = g.log.WriteString(name + "\n")
}

// soapMethodName finds the first element inside the SOAP Body, for requests the simulator cannot
// decode (they are still requests a client made).
func soapMethodName(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return "(unparsed)"
		}
		if start, ok := tok.(xml.StartElement); ok {
			if inBody {
				return start.Name.Local
			}
			inBody = start.Name.Local == "Body"
		}
	}
}

// intercept answers the request itself and returns true, or returns false to pass it on.
func (g *guard) intercept(w http.ResponseWriter, r *http.Request, method *simulator.Method) bool {
	var entity types.ManagedObjectReference
	var name string
	var refused *refusal
	switch req := method.Body.(type) {
	case *types.UpdatePassthruConfig:
		return g.updatePassthruConfig(w, r, req)
	case *types.FindAllByUuid:
		if !g.authenticated(r) {
			return false
		}
		writeRefsResponse(w, method.Name, findAllByUUID(req))
		return true
	case *types.RebootHost_Task:
		host, ok := simulator.Map.Get(req.This).(*simulator.HostSystem)
		if !ok || !g.authenticated(r) {
			return false // the simulator answers: not found, not authenticated
		}
		writeTaskResponse(w, method.Name, rebootHost(host, req.Force))
		return true
	case *types.ReconfigVM_Task:
		entity, name, refused = req.This, "reconfigVm", checkReconfigure(req)
	case *types.PowerOnVM_Task:
		entity, name, refused = req.This, "powerOn", checkPowerOn(req.This)
	case *types.CreateVM_Task:
		entity, name, refused = req.This, "createVm", checkCreate(req)
	}
	if refused == nil || !g.authenticated(r) {
		return false
	}
	writeTaskResponse(w, method.Name, failedTask(entity, name, refused))
	return true
}

// probeEnvelope is a call that needs a session (CurrentTime is not in vcsim's list of calls
// allowed without one).
const probeEnvelope = `<?xml version="1.0" encoding="UTF-8"?>` +
	`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>` +
	`<CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime>` +
	`</soapenv:Body></soapenv:Envelope>`

// authenticated asks the simulator whether the request's session cookie is logged in, by passing
// it a CurrentTime call with the same headers: its sessions are private to its package.
func (g *guard) authenticated(r *http.Request) bool {
	probe := r.Clone(r.Context())
	probe.Body = io.NopCloser(strings.NewReader(probeEnvelope))
	probe.ContentLength = int64(len(probeEnvelope))
	rec := httptest.NewRecorder()
	g.next.ServeHTTP(rec, probe)
	return rec.Code == http.StatusOK
}

// writeTaskResponse answers a *_Task call with its task, in the envelope vcsim uses.
func writeTaskResponse(w http.ResponseWriter, method string, task types.ManagedObjectReference) {
	writeRefsResponse(w, method, []types.ManagedObjectReference{task})
}

// writeRefsResponse answers a call whose result is managed object references (none, one or more).
func writeRefsResponse(w http.ResponseWriter, method string, refs []types.ManagedObjectReference) {
	var vals strings.Builder
	for _, ref := range refs {
		vals.WriteString(`<returnval type="`)
		_ = xml.EscapeText(&vals, []byte(ref.Type))
		vals.WriteString(`">`)
		_ = xml.EscapeText(&vals, []byte(ref.Value))
		vals.WriteString(`</returnval>`)
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" `+
		`xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" `+
		`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`+
		`<%sResponse xmlns="urn:vim25">%s</%sResponse>`+
		`</soapenv:Body></soapenv:Envelope>`, method, vals.String(), method)
}

// updatePassthruConfig passes the call to the simulator and, once it succeeded, stores the
// hardwareLabel of each config that has one: govmomi 0.24.2's HostPciPassthruConfig has no such
// field, so the simulator's decoder drops it and only the request's XML has it.
func (g *guard) updatePassthruConfig(w http.ResponseWriter, r *http.Request, req *types.UpdatePassthruConfig) bool {
	system, ok := simulator.Map.Get(req.This).(*pciPassthruSystem)
	if !ok {
		return false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	labels := passthruLabels(body)
	rec := httptest.NewRecorder()
	g.next.ServeHTTP(rec, r)
	if rec.Code == http.StatusOK && len(labels) > 0 {
		system.gh.Lock()
		system.gh.setLabels(labels)
		system.gh.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
	return true
}

// passthruLabels reads {id: hardwareLabel} from the config elements of an UpdatePassthruConfig
// request: only configs that carry a hardwareLabel element (an empty one clears the label).
func passthruLabels(body []byte) map[string]string {
	labels := map[string]string{}
	d := xml.NewDecoder(bytes.NewReader(body))
	var id, label, field string
	hasLabel, inConfig := false, false
	for {
		tok, err := d.Token()
		if err != nil {
			return labels
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case t.Name.Local == "config":
				inConfig, id, label, hasLabel, field = true, "", "", false, ""
			case inConfig:
				field = t.Name.Local
				hasLabel = hasLabel || field == "hardwareLabel"
			}
		case xml.CharData:
			switch field {
			case "id":
				id += string(t)
			case "hardwareLabel":
				label += string(t)
			}
		case xml.EndElement:
			field = ""
			if t.Name.Local == "config" && inConfig {
				if hasLabel && id != "" {
					labels[strings.TrimSpace(id)] = label
				}
				inConfig = false
			}
		}
	}
}

// findAllByUUID is SearchIndex.FindAllByUuid, which vcsim 0.24.2 lacks: every VM (vmSearch) with
// the BIOS uuid (or instance uuid), or every host with the hardware uuid. Clones can share a BIOS
// uuid. The datacenter argument is not used.
func findAllByUUID(req *types.FindAllByUuid) []types.ManagedObjectReference {
	var refs []types.ManagedObjectReference
	kind := "HostSystem"
	if req.VmSearch {
		kind = "VirtualMachine"
	}
	for _, e := range simulator.Map.All(kind) {
		match := false
		switch o := e.(type) {
		case *simulator.VirtualMachine:
			simulator.Map.WithLock(o, func() {
				if req.InstanceUuid != nil && *req.InstanceUuid {
					match = o.Config.InstanceUuid == req.Uuid
				} else {
					match = o.Config.Uuid == req.Uuid
				}
			})
		case *simulator.HostSystem:
			simulator.Map.WithLock(o, func() { match = o.Summary.Hardware.Uuid == req.Uuid })
		}
		if match {
			refs = append(refs, e.Reference())
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Value < refs[j].Value })
	return refs
}

// failedTask makes a task that has failed with the refusal. Unlike Task.Run, which sets the
// localized message to the fault's Go type name, it carries a message a person can act on.
func failedTask(entity types.ManagedObjectReference, name string, r *refusal) types.ManagedObjectReference {
	task := simulator.CreateTask(entity, name, nil)
	now := time.Now()
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.startTime", Val: now},
		{Name: "info.completeTime", Val: now},
		{Name: "info.state", Val: types.TaskInfoStateError},
		{Name: "info.error", Val: types.LocalizedMethodFault{Fault: r.fault, LocalizedMessage: r.msg}},
	})
	return task.Self
}

// rebootHost simulates an instant host reboot: refused outside maintenance mode unless forced, as
// ESXi does; powered-on VMs on the host go down; pending passthrough changes become active; the
// boot time moves; the host stays in maintenance mode.
func rebootHost(host *simulator.HostSystem, force bool) types.ManagedObjectReference {
	var inMaintenance bool
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(host, func() {
		inMaintenance = host.Runtime.InMaintenanceMode
		vms = append(vms, host.Vm...)
	})
	if !inMaintenance && !force {
		return failedTask(host.Self, "rebootHost", msgFault(&types.InvalidState{}, fmt.Sprintf(
			"The operation is not allowed in the current state: host %s is not in maintenance mode "+
				"(enter maintenance mode first, or reboot with force=true).", host.Name)))
	}
	task := simulator.CreateTask(host, "rebootHost", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		for _, ref := range vms {
			if vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine); ok {
				simulator.Map.WithLock(vm, func() {
					if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
						simulator.Map.Update(vm, []types.PropertyChange{
							{Name: "runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
							{Name: "summary.runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
						})
					}
				})
			}
		}
		if gh := gpuHostOf(host.Self); gh != nil {
			gh.Lock()
			gh.activate()
			gh.Unlock()
		}
		now := time.Now()
		simulator.Map.WithLock(host, func() { host.Runtime.BootTime = &now })
		return nil, nil
	})
	return task.Run()
}
