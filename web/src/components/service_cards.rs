//! The list of service cards, one per configured service.

use super::ServiceCard;
use crate::state::use_app;
use leptos::prelude::*;

/// A card for every service of the running config, in config order.
#[component]
pub fn ServiceCards() -> impl IntoView {
    let state = use_app();
    let names = Memo::new(move |_| {
        state.config().with(|config| {
            config
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        })
    });
    view! {
        <section class="panel services" aria-labelledby="services-heading">
            <h2 id="services-heading">"Services"</h2>
            <div class="cards">
                <For each=move || names.get() key=|name| name.clone() let:name>
                    <ServiceCard name=name/>
                </For>
            </div>
        </section>
    }
}
