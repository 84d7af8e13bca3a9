//! Any HorizontalPodAutoscaler object and any metric values: reading the HPA returns a spec or an error, and
//! one sync of the controller model (every metric kind's calculation, then the behavior) gives a replica
//! count, never a panic or an overflow.
#![no_main]

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::hpa::{
    self, Behavior, Limits, Memory, MetricSource, Pod, Sample, Samples, Situation, Target, Tolerance,
    calculator, spec::ControllerFlags,
};

fuzz_target!(|input: (&str, Vec<i64>, u32, u8)| {
    let (json, values, current, shape) = input;
    let tolerance = Tolerance::both(f64::from(shape % 20) / 100.0);
    let pods: Vec<Pod> = (0..values.len().min(64))
        .map(|i| {
            let mut pod = Pod::running(&format!("p{i}"));
            pod.phase = ["Running", "Pending", "Failed"][(i + usize::from(shape)) % 3].to_owned();
            pod
        })
        .collect();
    let samples: Samples = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("p{i}"), Sample::of(*v)))
        .collect();
    let first = values.first().copied().unwrap_or(1);
    let spec = current % 1000;
    let _ = calculator::pods_average_value(&samples, &pods, first, spec, tolerance, None);
    let requests = samples.keys().map(|k| (k.clone(), first)).collect();
    let _ = calculator::resource_utilization(&samples, &pods, &requests, first, spec, tolerance, None);
    let _ = calculator::value(first, first.wrapping_add(1), spec, &pods, tolerance);
    let _ = calculator::average_value(calculator::external_sum(&values), first, spec, tolerance);
    let memory = Memory {
        recommendations: values.iter().map(|v| (*v, (*v as u32) % 1000)).collect(),
        scale_ups: values.iter().map(|v| (*v, (*v as u32) % 50)).collect(),
        scale_downs: values.iter().rev().map(|v| (*v, (*v as u32) % 50)).collect(),
    };
    let limits = Limits { min: u32::from(shape) % 5, max: spec.max(1) };
    let _ = hpa::behavior::with_behavior(spec, first as u32 % 2000, limits, &Behavior::defaults(first), &memory, 0);
    let _ = hpa::behavior::without_behavior(spec, first as u32 % 2000, limits, first, &memory, 0);
    let Ok(object) = serde_json::from_str::<HorizontalPodAutoscaler>(json) else {
        return;
    };
    let Ok(parsed) = hpa::HpaSpec::from_k8s(&object, ControllerFlags::default()) else {
        return;
    };
    let proposals: Vec<Result<u32, String>> = parsed
        .metrics
        .iter()
        .zip(values.iter().chain(std::iter::repeat(&0)))
        .map(|(metric, v)| match metric {
            MetricSource::Object { target: Target::AverageValue(t), .. } => {
                calculator::average_value(*v, *t, spec, parsed.tolerance)
                    .map(|p| p.replicas)
                    .map_err(|e| e.to_string())
            }
            _ if *v < 0 => Err("failed".to_owned()),
            _ => Ok((*v as u32) % 1000),
        })
        .collect();
    let situation = Situation { current: spec, memory, now: first, ..Situation::default() };
    let _ = hpa::decide(&parsed, &situation, &proposals).replicas(spec);
});
