package lifecycle

// State is the coarse state of the server as the agent and the Lambdas see it.
type State string

// The five states, derived from the ECS service and its tasks (see Status in
// package lifecycle/fargate):
const (
	// StateSleeping: desired count 0 and no task running or pending. Costs nothing.
	StateSleeping State = "sleeping"
	// StateStarting: desired count ≥ 1 but no task of the service is both in
	// lastStatus RUNNING and reachable (has a public IP) yet.
	StateStarting State = "starting"
	// StateRunning: desired count ≥ 1 and at least one task of the service is in
	// lastStatus RUNNING with a public IP, which Wake reports in
	// [WakeResult.Address]. A task ECS is stopping (a replacement's old task,
	// draining) never counts; of several, the current deployment's, then a
	// healthy one, then the newest is reported. The tunnel listener may still
	// need a moment, which the agent's dial retries cover.
	StateRunning State = "running"
	// StateStopping: desired count 0 but tasks are still running or pending
	// (ECS is draining them). Waking now is allowed and simply raises the count.
	StateStopping State = "stopping"
	// StateFailed: desired count ≥ 1, no task is running, and tasks of the
	// service keep failing to start or crashing (at least two failed stops
	// since the Wake that raised the count, within the failure window).
	// [WakeResult.Reason] carries the newest stopped task's reason and exit
	// code. ECS keeps retrying with its own back-off, so the state may turn
	// into starting or running by itself, but it usually needs a fix (image,
	// secrets, configuration); the Sleep Lambda scales a service that stays
	// there to 0.
	StateFailed State = "failed"
)
