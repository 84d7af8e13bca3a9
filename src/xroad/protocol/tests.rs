//! The op-monitor answers of X-Road's PR-OPMON, UG-SS and the Sidecar user guide (OPM-01 … OPM-14), built byte by byte.

use std::io::Write;

use super::*;

const BOUNDARY: &str = "xroadAbCdEfGhIjKlMnOpQrStUvWxYz12345";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn soap_body(count: usize, next: Option<i64>) -> String {
    let next = next.map_or(String::new(), |n| {
        format!("<om:nextRecordsFrom>{n}</om:nextRecordsFrom>")
    });
    format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:om="http://x-road.eu/xsd/op-monitoring.xsd"><SOAP-ENV:Header/><SOAP-ENV:Body><om:getSecurityServerOperationalDataResponse><om:recordsCount>{count}</om:recordsCount><om:records>cid:operational-monitoring-data.json.gz</om:records>{next}</om:getSecurityServerOperationalDataResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    )
}

/// A multipart answer; `eol` is the line ending, `attachment_first` swaps the parts.
fn multipart(
    soap: &str,
    attachment: &[u8],
    eol: &str,
    attachment_first: bool,
    content_id: &str,
) -> Vec<u8> {
    let soap_part =
        format!("--{BOUNDARY}{eol}content-type:text/xml{eol}{eol}{soap}{eol}").into_bytes();
    let mut gz_part = format!(
        "--{BOUNDARY}{eol}Content-Type:application/gzip{eol}content-transfer-encoding: binary{eol}Content-ID: <{content_id}>{eol}{eol}"
    )
    .into_bytes();
    gz_part.extend_from_slice(attachment);
    gz_part.extend_from_slice(eol.as_bytes());
    let mut body = Vec::new();
    if attachment_first {
        body.extend(gz_part);
        body.extend(soap_part);
    } else {
        body.extend(soap_part);
        body.extend(gz_part);
    }
    body.extend(format!("--{BOUNDARY}--{eol}").into_bytes());
    body
}

fn content_type() -> String {
    format!("multipart/related; type=\"text/xml\"; charset=UTF-8; boundary={BOUNDARY}")
}

const RECORDS: &str = r#"{"records":[
  {"monitoringDataTs":1767225560,"securityServerInternalIp":"10.0.1.11","securityServerType":"Client","requestInTs":1767225559123,
   "responseOutTs":1767225559300,"serviceXRoadInstance":"EE","serviceMemberClass":"GOV","serviceMemberCode":"70000001",
   "serviceSubsystemCode":"sub","serviceCode":"getRandom","serviceVersion":"v1","succeeded":true,"requestSize":1200,
   "responseSize":900,"xRequestId":"b2f8c0a4-0000-4000-8000-000000000000"},
  {"monitoringDataTs":1767225561,"securityServerInternalIp":"10.0.1.12","securityServerType":"Producer","succeeded":false,
   "faultCode":"Server.ServiceFailed","restMethod":"GET","restPath":"/cat/*","serviceCode":"cats"}]}"#;

fn happy() -> Vec<u8> {
    multipart(
        &soap_body(2, None),
        &gzip(RECORDS.as_bytes()),
        "\r\n",
        false,
        "operational-monitoring-data.json.gz",
    )
}

#[test]
fn the_request_names_the_owner_the_server_and_the_window() {
    let owner = XRoadId {
        instance: "EE".into(),
        member_class: "GOV".into(),
        member_code: "70000001".into(),
        server_code: None,
    };
    let server = XRoadId {
        server_code: Some("sidecar".into()),
        ..owner.clone()
    };
    let request = operational_data_request(
        &owner,
        &server,
        "id-1",
        1767225540,
        1767225599,
        &FIELD_SETS[0].fields().collect::<Vec<_>>(),
    );
    assert!(request.contains(r#"<xroad:client id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>70000001</id:memberCode></xroad:client>"#));
    assert!(request.contains("<id:memberCode>70000001</id:memberCode><id:serviceCode>getSecurityServerOperationalData</id:serviceCode></xroad:service>"));
    assert!(request.contains(r#"<xroad:securityServer id:objectType="SERVER"><id:xRoadInstance>EE</id:xRoadInstance><id:memberClass>GOV</id:memberClass><id:memberCode>70000001</id:memberCode><id:serverCode>sidecar</id:serverCode></xroad:securityServer>"#));
    assert!(request.contains("<xroad:protocolVersion>4.0</xroad:protocolVersion>"));
    assert!(request.contains(
        "<om:recordsFrom>1767225540</om:recordsFrom><om:recordsTo>1767225599</om:recordsTo>"
    ));
    assert!(request.contains("<om:outputField>monitoringDataTs</om:outputField>"));
    let hostile = XRoadId {
        member_code: "<x>&".into(),
        ..owner
    };
    assert!(
        operational_data_request(&hostile, &server, "i", 1, 2, &[])
            .contains("<id:memberCode>&lt;x&gt;&amp;</id:memberCode>")
    );
}

#[test]
fn a_multipart_answer_yields_its_records_and_ignores_unknown_fields() {
    let data = parse_response(&content_type(), &happy()).unwrap();
    assert_eq!(
        (
            data.records_count,
            data.records.len(),
            data.next_records_from
        ),
        (2, 2, None)
    );
    let first = &data.records[0];
    assert_eq!(
        first.security_server_internal_ip.as_deref(),
        Some("10.0.1.11")
    );
    assert_eq!(
        (first.request_in_ts, first.succeeded, first.request_size),
        (Some(1767225559123), Some(true), Some(1200))
    );
    assert_eq!(
        data.records[1].service_version, None,
        "absent fields are None"
    );
    assert_eq!(
        data.records[1].fault_code.as_deref(),
        Some("Server.ServiceFailed")
    );
}

#[test]
fn multipart_variants_parse_alike() {
    let soap = soap_body(2, Some(1767225600));
    let gz = gzip(RECORDS.as_bytes());
    for (eol, attachment_first) in [("\r\n", false), ("\n", false), ("\r\n", true), ("\n", true)] {
        let body = multipart(
            &soap,
            &gz,
            eol,
            attachment_first,
            "operational-monitoring-data.json.gz",
        );
        let quoted = format!("Multipart/Related; type=\"text/xml\"; boundary=\"{BOUNDARY}\"");
        let data = parse_response(&quoted, &body)
            .unwrap_or_else(|e| panic!("eol {eol:?}, first {attachment_first}: {e}"));
        assert_eq!(
            (data.records.len(), data.next_records_from),
            (2, Some(1767225600))
        );
    }
}

#[test]
fn a_content_id_mismatch_is_a_parse_error() {
    let body = multipart(
        &soap_body(2, None),
        &gzip(RECORDS.as_bytes()),
        "\r\n",
        false,
        "other.json.gz",
    );
    assert_eq!(
        parse_response(&content_type(), &body).unwrap_err(),
        ResponseError::Parse(
            "no attachment with content-id operational-monitoring-data.json.gz".into()
        )
    );
}

#[test]
fn broken_attachments_are_errors_never_partial_counts() {
    let random = multipart(
        &soap_body(1, None),
        b"\x00\x01not gzip at all",
        "\r\n",
        false,
        "operational-monitoring-data.json.gz",
    );
    assert!(matches!(
        parse_response(&content_type(), &random),
        Err(ResponseError::Gzip(_))
    ));
    let full = gzip(RECORDS.as_bytes());
    let truncated = multipart(
        &soap_body(1, None),
        &full[..full.len() / 2],
        "\r\n",
        false,
        "operational-monitoring-data.json.gz",
    );
    assert!(matches!(
        parse_response(&content_type(), &truncated),
        Err(ResponseError::Gzip(_))
    ));
    let cut_json = multipart(
        &soap_body(1, None),
        &gzip(br#"{"records":[{"monitoringDataTs":"#),
        "\r\n",
        false,
        "operational-monitoring-data.json.gz",
    );
    assert!(matches!(
        parse_response(&content_type(), &cut_json),
        Err(ResponseError::Json(_))
    ));
    let wrong_key = multipart(
        &soap_body(0, None),
        &gzip(br#"{"rows":[]}"#),
        "\r\n",
        false,
        "operational-monitoring-data.json.gz",
    );
    assert!(matches!(
        parse_response(&content_type(), &wrong_key),
        Err(ResponseError::Json(_))
    ));
}

#[test]
fn faults_of_every_version_are_classified_by_their_string() {
    let fault = |code: &str, string: &str| {
        format!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{string}</faultstring><detail><faultDetail xmlns="">4f1c</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        )
    };
    for code in ["Client.InvalidRequest", "client.invalid_request"] {
        let err = parse_response(
            "text/xml; charset=utf-8",
            fault(code, "Records not available from 1767225599 yet").as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.fault_kind(), Some(FaultKind::NotYetAvailable));
        assert_eq!(normalized_fault_code(code), "client.invalidrequest");
    }
    let unknown = parse_response(
        "text/xml",
        fault(
            "Client.InvalidRequest",
            "Unknown output field in search criteria: restMethod",
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(unknown.fault_kind(), Some(FaultKind::UnknownOutputField));
    let ssl = parse_response(
        "text/xml",
        fault(
            "Server.ClientProxy.SslAuthenticationFailed",
            "Client (MEMBER:EE/GOV/1) specifies HTTPS but did not supply TLS certificate",
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(ssl.fault_kind(), Some(FaultKind::Other));
    assert_eq!(ssl.reason(), "fault");
}

#[test]
fn non_soap_answers_are_parse_errors() {
    assert!(matches!(
        parse_response("text/html", b"<html>502 Bad Gateway</html>"),
        Err(ResponseError::Parse(_))
    ));
    assert!(matches!(
        parse_response("text/xml", b"<not-closed"),
        Err(ResponseError::Parse(_))
    ));
    assert!(matches!(
        parse_response("multipart/related", b"--x\r\n"),
        Err(ResponseError::Parse(_))
    ));
}

#[test]
fn six_x_and_seven_x_record_names_read_into_one_model() {
    let v621 = r#"{"records":[{"monitoringDataTs":1,"requestSoapSize":10,"responseSoapSize":20,"soapFaultCode":"f","succeeded":false}]}"#;
    let v622 = r#"{"records":[{"monitoringDataTs":1,"requestRestSize":11,"responseRestSize":21,"statusCode":500}]}"#;
    let v77 = r#"{"records":[{"monitoringDataTs":1,"requestSize":12,"responseSize":22,"faultCode":"g","serviceType":"REST","xRoadVersion":"7.6.2"}]}"#;
    let sizes: Vec<_> = [v621, v622, v77]
        .iter()
        .map(|json| {
            let body = multipart(
                &soap_body(1, None),
                &gzip(json.as_bytes()),
                "\r\n",
                false,
                "operational-monitoring-data.json.gz",
            );
            let record = parse_response(&content_type(), &body)
                .unwrap()
                .records
                .remove(0);
            (record.request_size, record.response_size)
        })
        .collect();
    assert_eq!(
        sizes,
        [
            (Some(10), Some(20)),
            (Some(11), Some(21)),
            (Some(12), Some(22))
        ]
    );
}
