//! The list of service cards, one per configured service.

use super::service_card::card;
use crate::dynamic::text;
use crate::state::use_app;
use leptos::prelude::*;

/// A card for every service of the running config, in config order (see [`card`]), drawn as
/// markup (see [`crate::markup`]) and redrawn when a number on a card changes.
#[component]
pub fn ServiceCards() -> impl IntoView {
    let state = use_app();
    let cards = text(move || {
        state.frame.with(|frame| {
            state.config.with(|config| {
                let mut html = String::new();
                for service in &config.services {
                    card(
                        &mut html,
                        &service.name,
                        frame.service(&service.name),
                        frame.at_ms,
                    );
                }
                html
            })
        })
    });
    view! {
        <section class="panel services" aria-labelledby="services-heading">
            <h2 id="services-heading">"Services"</h2>
            <div class="cards" inner_html=cards></div>
        </section>
    }
}
