//! UPnP-IGD: SSDP discovery (UPnP Device Architecture 1.1 §1.3), the device description,
//! and the three SOAP actions Ferry uses on WANIPConnection / WANPPPConnection:
//! `AddPortMapping`, `GetExternalIPAddress`, `DeletePortMapping`.
//!
//! Only what these need of HTTP/1.1 and XML: a request we write ourselves, and a response
//! read whole (the driver reads at most [`MAX_HTTP`] bytes, `Connection: close`) whose
//! elements are found by name. The control URL must name the same host that answered the
//! discovery: a description cannot send our requests to another machine.

use core::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{MapError, MappingProtocol, PortMapping, checked_lease};

/// Where SSDP searches go.
pub const SSDP_ADDR: SocketAddr = SocketAddr::new(
    IpAddr::V4(core::net::Ipv4Addr::new(239, 255, 255, 250)),
    1900,
);
/// The device type searched for.
pub const IGD: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
/// Largest SSDP answer read.
pub const MAX_SSDP: usize = 2048;
/// Largest HTTP response read (a description or a SOAP answer); past it the reply is refused.
pub const MAX_HTTP: usize = 64 * 1024;
/// The services that map ports, best first.
const SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// An SSDP M-SEARCH for Internet Gateway Devices (answers within 1 s: `MX: 1`).
pub fn m_search() -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
         MX: 1\r\nST: {IGD}\r\n\r\n"
    )
}

/// The `LOCATION` of an SSDP answer from `from`: its description's address and path. The
/// location must be on `from`'s address.
pub fn parse_ssdp_answer(reply: &[u8], from: IpAddr) -> Result<(SocketAddr, String), MapError> {
    if reply.len() > MAX_SSDP {
        return Err(MapError::TooLarge(MAX_SSDP));
    }
    let text = core::str::from_utf8(reply).map_err(|_| MapError::Malformed("SSDP not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(MapError::Malformed("not an SSDP 200 answer"));
    }
    let location = header_value(lines, "location").ok_or(MapError::Malformed("no LOCATION"))?;
    let (addr, path) = parse_http_url(location)?;
    if addr.ip() != from {
        return Err(MapError::NotOurs("a LOCATION on another host"));
    }
    Ok((addr, path))
}

/// `http://IP:PORT/path` (an IP literal: Ferry resolves no name a gateway gives it).
pub fn parse_http_url(url: &str) -> Result<(SocketAddr, String), MapError> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or(MapError::Malformed("not an http:// URL"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = match host.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(
            host.parse::<IpAddr>()
                .map_err(|_| MapError::Malformed("a URL host that is not an IP literal"))?,
            80,
        ),
    };
    Ok((addr, path.to_owned()))
}

/// The control URL and service type of the first port-mapping service in a device
/// description fetched from `described_by`; relative URLs resolve against it, absolute ones
/// must name the same host.
pub fn parse_description(xml: &str, described_by: SocketAddr) -> Result<Control, MapError> {
    let mut best: Option<(usize, Control)> = None;
    for service in elements(xml, "service") {
        let Some(kind) = text_of(service, "serviceType") else {
            continue;
        };
        let Some(rank) = SERVICES.iter().position(|s| *s == kind.trim()) else {
            continue;
        };
        let Some(url) = text_of(service, "controlURL") else {
            continue;
        };
        let url = url.trim();
        let (addr, path) = if url.starts_with("http://") {
            parse_http_url(url)?
        } else if url.starts_with('/') {
            (described_by, url.to_owned())
        } else {
            (described_by, format!("/{url}"))
        };
        if addr.ip() != described_by.ip() {
            return Err(MapError::NotOurs("a control URL on another host"));
        }
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((
                rank,
                Control {
                    addr,
                    path,
                    service: SERVICES[rank],
                },
            ));
        }
    }
    best.map(|(_, c)| c).ok_or(MapError::Malformed(
        "no WANIPConnection or WANPPPConnection service",
    ))
}

/// Where to send SOAP actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The gateway's HTTP address.
    pub addr: SocketAddr,
    /// The control URL's path.
    pub path: String,
    /// The service type the actions belong to.
    pub service: &'static str,
}

impl Control {
    /// A whole HTTP request for `action` with `args` (names and values, in order; values
    /// are ours, numbers and addresses, with nothing to escape).
    pub fn request(&self, action: &str, args: &[(&str, String)]) -> String {
        let mut body = format!(
            "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
             <u:{action} xmlns:u=\"{}\">",
            self.service
        );
        for (name, value) in args {
            body.push_str(&format!("<{name}>{value}</{name}>"));
        }
        body.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
             SOAPAction: \"{}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.addr,
            self.service,
            body.len()
        )
    }

    /// `AddPortMapping` of TCP `external_port` to `internal` for `lease`.
    pub fn add_port_mapping(
        &self,
        internal: SocketAddr,
        external_port: u16,
        lease: Duration,
    ) -> String {
        self.request(
            "AddPortMapping",
            &[
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", external_port.to_string()),
                ("NewProtocol", "TCP".to_owned()),
                ("NewInternalPort", internal.port().to_string()),
                ("NewInternalClient", internal.ip().to_string()),
                ("NewEnabled", "1".to_owned()),
                ("NewPortMappingDescription", "Ferry".to_owned()),
                ("NewLeaseDuration", lease.as_secs().to_string()),
            ],
        )
    }

    /// `DeletePortMapping` of TCP `external_port`.
    pub fn delete_port_mapping(&self, external_port: u16) -> String {
        self.request(
            "DeletePortMapping",
            &[
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", external_port.to_string()),
                ("NewProtocol", "TCP".to_owned()),
            ],
        )
    }

    /// `GetExternalIPAddress`.
    pub fn get_external_ip_address(&self) -> String {
        self.request("GetExternalIPAddress", &[])
    }
}

/// The body of a whole HTTP response (headers and body as read until the server closed),
/// when its status is 200; a SOAP fault's UPnP error otherwise.
pub fn parse_http_response(reply: &[u8]) -> Result<String, MapError> {
    if reply.len() > MAX_HTTP {
        return Err(MapError::TooLarge(MAX_HTTP));
    }
    let text =
        core::str::from_utf8(reply).map_err(|_| MapError::Malformed("an HTTP reply not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or(MapError::Malformed(
        "an HTTP reply without its end of headers",
    ))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code: u16 = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(MapError::Malformed("no HTTP status"))?;
    let headers: Vec<&str> = lines.collect();
    let chunked = header_value(headers.iter().copied(), "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        match header_value(headers.iter().copied(), "content-length") {
            Some(n) => {
                let n: usize = n
                    .trim()
                    .parse()
                    .map_err(|_| MapError::Malformed("a Content-Length that is not a number"))?;
                body.get(..n)
                    .ok_or(MapError::Malformed(
                        "a body shorter than its Content-Length",
                    ))?
                    .to_owned()
            }
            None => body.to_owned(),
        }
    };
    if code == 200 {
        return Ok(body);
    }
    match text_of(&body, "errorCode").and_then(|c| c.trim().parse::<u32>().ok()) {
        Some(code) => Err(MapError::Refused {
            code,
            meaning: text_of(&body, "errorDescription")
                .unwrap_or("no description")
                .chars()
                .take(200)
                .collect(),
        }),
        None => Err(MapError::Refused {
            code: u32::from(code),
            meaning: "HTTP status".to_owned(),
        }),
    }
}

/// The mapping an `AddPortMapping` success gives, with the external IP from
/// `GetExternalIPAddress`'s answer body.
pub fn mapping(
    internal: SocketAddr,
    external_port: u16,
    lease: Duration,
    external_ip_body: &str,
) -> Result<PortMapping, MapError> {
    let ip = text_of(external_ip_body, "NewExternalIPAddress")
        .ok_or(MapError::Malformed("no NewExternalIPAddress"))?;
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| MapError::Address(ip.chars().take(64).collect()))?;
    if ip.is_unspecified() || ip.is_ipv4() != internal.is_ipv4() || external_port == 0 {
        return Err(MapError::Address(ip.to_string()));
    }
    Ok(PortMapping {
        internal,
        external: SocketAddr::new(ip, external_port),
        lease: checked_lease(lease)?,
        protocol: MappingProtocol::UpnpIgd,
    })
}

fn header_value<'a>(lines: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A chunked body, joined (RFC 9112 §7.1); chunk extensions and trailers ignored.
fn dechunk(mut rest: &str) -> Result<String, MapError> {
    let mut out = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or(MapError::Malformed("a chunk without its size line"))?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| MapError::Malformed("a chunk size that is not hexadecimal"))?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = after
            .get(..n)
            .ok_or(MapError::Malformed("a chunk shorter than its size"))?;
        out.push_str(chunk);
        rest = after
            .get(n..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or(MapError::Malformed("a chunk without its end of line"))?;
    }
}

/// The contents of each `<name>`…`</name>` element (any namespace prefix, any attributes).
fn elements<'a>(xml: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut rest = xml;
    core::iter::from_fn(move || {
        let (inner, after) = next_element(rest, name)?;
        rest = after;
        Some(inner)
    })
}

/// The text of the first `<name>` element.
fn text_of<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    next_element(xml, name).map(|(inner, _)| inner)
}

/// The first `<name …>inner</name>` (or `<p:name>`…`</p:name>`): inner, and what follows.
fn next_element<'a>(xml: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    while let Some(i) = xml.get(from..)?.find('<') {
        let start = from + i + 1;
        let tag_end = start + xml.get(start..)?.find('>')?;
        let tag = &xml[start..tag_end];
        from = tag_end + 1;
        let tag_name = tag.split([' ', '\t', '\r', '\n', '/']).next().unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or("");
        if local != name || tag.starts_with('/') {
            continue;
        }
        if tag.ends_with('/') {
            return Some(("", &xml[from..]));
        }
        let close = format!("</{tag_name}>");
        let end = from + xml.get(from..)?.find(&close)?;
        return Some((&xml[from..end], &xml[end + close.len()..]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "10.2.0.1";

    fn description(control: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\"><device>\
             <serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1\
             </serviceType><controlURL>/ctl/L3F</controlURL></service></serviceList>\
             <deviceList><device><deviceList><device><serviceList><service>\
             <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\
             <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>\
             <controlURL>{control}</controlURL></service></serviceList></device></deviceList>\
             </device></deviceList></device></root>"
        )
    }

    #[test]
    fn an_ssdp_answer_gives_the_location_on_the_answering_host() {
        // SECURITY: row 145
        let gw: IpAddr = GATEWAY.parse().expect("a test value");
        let answer = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: x\r\n\
            Location: http://10.2.0.1:5000/rootDesc.xml\r\n\r\n";
        let (addr, path) = parse_ssdp_answer(answer, gw).expect("a test value");
        assert_eq!(addr, "10.2.0.1:5000".parse().expect("a test value"));
        assert_eq!(path, "/rootDesc.xml");
        let elsewhere = b"HTTP/1.1 200 OK\r\nLOCATION: http://192.0.2.9:80/x\r\n\r\n";
        assert_eq!(
            parse_ssdp_answer(elsewhere, gw),
            Err(MapError::NotOurs("a LOCATION on another host"))
        );
        assert!(parse_ssdp_answer(b"NOTIFY * HTTP/1.1\r\n\r\n", gw).is_err());
        assert!(parse_ssdp_answer(&[0xff; 100], gw).is_err());
        assert!(parse_ssdp_answer(&[b'a'; 5000], gw).is_err());
    }

    #[test]
    fn the_description_names_the_wan_ip_connection_control() {
        // SECURITY: row 145
        let by: SocketAddr = "10.2.0.1:5000".parse().expect("a test value");
        let c = parse_description(&description("/ctl/IPConn"), by).expect("a test value");
        assert_eq!(c.addr, by);
        assert_eq!(c.path, "/ctl/IPConn");
        assert_eq!(c.service, "urn:schemas-upnp-org:service:WANIPConnection:1");
        let abs = parse_description(&description("http://10.2.0.1:5000/ctl/IPConn"), by);
        assert_eq!(abs.map(|c| c.path), Ok("/ctl/IPConn".to_owned()));
        let away = parse_description(&description("http://192.0.2.9:80/ctl"), by);
        assert_eq!(
            away,
            Err(MapError::NotOurs("a control URL on another host"))
        );
        assert!(parse_description("<root><service>", by).is_err());
        assert!(parse_description("", by).is_err());
    }

    #[test]
    fn soap_requests_and_answers() {
        let c = Control {
            addr: "10.2.0.1:5000".parse().expect("a test value"),
            path: "/ctl/IPConn".to_owned(),
            service: SERVICES[1],
        };
        let internal: SocketAddr = "10.2.0.2:4000".parse().expect("a test value");
        let add = c.add_port_mapping(internal, 4000, Duration::from_secs(3600));
        assert!(add.starts_with("POST /ctl/IPConn HTTP/1.1\r\n"), "{add}");
        assert!(add.contains(
            "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""
        ));
        assert!(add.contains("<NewInternalClient>10.2.0.2</NewInternalClient>"));
        assert!(add.contains("<NewLeaseDuration>3600</NewLeaseDuration>"));
        let (head, body) = add.split_once("\r\n\r\n").expect("a test value");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));

        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n<s:Envelope><s:Body>\
            <u:GetExternalIPAddressResponse><NewExternalIPAddress>198.18.2.2\
            </NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>";
        let n = ok.split_once("\r\n\r\n").expect("a test value").1.len();
        let ok = ok.replace("Content-Length: 120", &format!("Content-Length: {n}"));
        let body = parse_http_response(ok.as_bytes()).expect("a test value");
        let m = mapping(internal, 4000, Duration::from_secs(3600), &body).expect("a test value");
        assert_eq!(m.external, "198.18.2.2:4000".parse().expect("a test value"));
        assert_eq!(m.protocol, MappingProtocol::UpnpIgd);
        assert_eq!(
            mapping(internal, 4000, Duration::ZERO, &body),
            Err(MapError::Lease(0))
        );

        let fault = "HTTP/1.1 500 Internal Server Error\r\n\r\n<s:Envelope><s:Body><s:Fault>\
            <detail><UPnPError><errorCode>718</errorCode><errorDescription>\
            ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body>\
            </s:Envelope>";
        assert_eq!(
            parse_http_response(fault.as_bytes()),
            Err(MapError::Refused {
                code: 718,
                meaning: "ConflictInMappingEntry".to_owned()
            })
        );
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked.as_bytes()),
            Ok("hello".to_owned())
        );
    }

    #[test]
    fn hostile_http_is_refused_bounded() {
        // SECURITY: row 145
        let huge = vec![b'a'; MAX_HTTP + 1];
        assert_eq!(
            parse_http_response(&huge),
            Err(MapError::TooLarge(MAX_HTTP))
        );
        for bad in [
            "",
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nab",
        ] {
            assert!(parse_http_response(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let internal: SocketAddr = "10.2.0.2:4000".parse().expect("a test value");
        for body in [
            "",
            "<NewExternalIPAddress>not an ip</NewExternalIPAddress>",
            "<NewExternalIPAddress>0.0.0.0</NewExternalIPAddress>",
            "<NewExternalIPAddress>::1</NewExternalIPAddress>",
            "<NewExternalIPAddress>",
        ] {
            assert!(
                mapping(internal, 4000, Duration::from_secs(60), body).is_err(),
                "{body}"
            );
        }
    }
}
