//! Any Prometheus Adapter configuration or metricsQuery template: parsing returns rules or an error, and a
//! template that parses renders or fails cleanly, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xroad_metrics_adapter::compat::rules::AdapterConfig;
use xroad_metrics_adapter::compat::template::{Data, Template, Value};

fuzz_target!(|input: (&str, &str)| {
    let (config, template) = input;
    let _ = AdapterConfig::parse(config);
    if let Ok(template) = template.parse::<Template>() {
        let data = Data::from([
            ("Series", Value::Str("up".into())),
            ("LabelMatchers", Value::Str(r#"namespace="ns""#.into())),
            ("GroupBy", Value::Str("pod".into())),
            ("GroupBySlice", Value::List(vec!["pod".into(), "namespace".into()])),
            (
                "LabelValuesByName",
                Value::Map([("pod".to_owned(), "a|b".to_owned())].into()),
            ),
        ]);
        let _ = template.render(&data);
    }
});
