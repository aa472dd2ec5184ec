/** @odoo-module **/
// The accountant's flows, run in headless Chromium by tests/test_tours.py (TestTours) against
// the Sandbox Bank simulator. Every step waits for the UI state it names, with its text.
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

const tours = registry.category("web_tour.tours");
const MODULE = "account_online_synchronization";

function openConfigurationMenu(menuXmlid, content) {
    return [
        ...stepUtils.goToAppSteps("account.menu_finance", "Open Invoicing / Accounting"),
        {
            content: "Open the Configuration menu",
            trigger: '.o_main_navbar [data-menu-xmlid="account.menu_finance_configuration"]',
            run: "click",
        },
        {
            content,
            trigger: `.dropdown-menu [data-menu-xmlid="${MODULE}.${menuXmlid}"]`,
            run: "click",
        },
    ];
}

// A journal's card on the accounting dashboard.
function card(journalName) {
    return `.o_kanban_record:has(a[name=open_action]:contains("${journalName}"))`;
}

// ---------------------------------------------------------------------- a) Add a Bank Account
// The browser leaves for the bank's consent page after "Connect"; the test's browser presses
// "Allow access" there and the bank sends it back to Odoo's callback, where the tour resumes.
tours.add("account_online_sync_tour_add_bank_account", {
    url: "/odoo",
    steps: () => [
        ...openConfigurationMenu("menu_online_sync_add_bank_account", "Add a Bank Account"),
        {
            content: "The Add a Bank Account wizard opens",
            trigger: ".modal .modal-title:contains(Add a Bank Account)",
        },
        {
            content: "First connection of the company: give a security contact",
            trigger: ".modal div[name=security_contact] input",
            run: "edit +32 2 123 45 67",
        },
        {
            content: "Search the bank by name",
            trigger: ".modal div[name=search_text] input",
            run: "edit Sandbox",
        },
        {
            content: "The wizard opened with the country's banks listed",
            trigger: ".modal .o_data_row:contains(Sandbox Bank)",
            run() {
                // Mark this dialog: the steps below must see the dialog of the search's answer.
                this.anchor.closest(".modal").classList.add("o_tour_before_search");
            },
        },
        {
            trigger: ".modal footer button[name=action_search]",
            run: "click",
        },
        {
            content: "Both Sandbox banks are found, the MFA one flagged Beta",
            trigger: ".modal:not(.o_tour_before_search) .o_data_row:has(td[name=bic]:contains(SNDBBEB2)):contains(Sandbox Bank (MFA)) td[name=beta] input:checked",
        },
        {
            content: "The Sandbox Bank is listed with its BIC and provider",
            trigger: ".modal:not(.o_tour_before_search) .o_data_row:has(td[name=bic]:contains(SNDBBEB1)):contains(Sandbox Bank) td[name=provider_ids]:contains(Sandbox)",
        },
        {
            content: "Connect: the browser goes to the bank's consent page",
            trigger: ".modal:not(.o_tour_before_search) .o_data_row:has(td[name=bic]:contains(SNDBBEB1)) button.o_online_sync_connect_institution",
            run: "click",
        },
        // --- on the bank's site: "Allow access" (tests/test_tours.py), back to the callback ---
        {
            content: "Back from the bank: choose the accounts to synchronize",
            trigger: ".modal .modal-title:contains(Choose the accounts to synchronize)",
            timeout: 30000,
        },
        {
            content: "The EUR account is listed with its number and balance",
            trigger: ".modal .o_data_row:contains(Sandbox Current Account):contains(BE14063123456783) td[name=balance]:contains(€)",
        },
        {
            content: "The USD account is listed with its number and balance",
            trigger: ".modal .o_data_row:contains(Sandbox Dollar Account):contains(****5678) td[name=balance]:contains($)",
        },
        {
            content: "Send the EUR account to the company's bank journal",
            trigger: ".modal .o_data_row:contains(Sandbox Current Account) td[name=journal_id]",
            run: "click",
        },
        {
            trigger: ".modal .o_data_row:contains(Sandbox Current Account) td[name=journal_id] input",
            run: "edit Main Bank",
        },
        {
            trigger: ".o-autocomplete--dropdown-menu .o-autocomplete--dropdown-item:contains(Main Bank)",
            run: "click",
        },
        {
            content: "The EUR account goes to Main Bank; the USD one, left empty, to a new journal",
            trigger: ".modal .o_data_row:contains(Sandbox Current Account) td[name=journal_id]:contains(Main Bank)",
        },
        {
            content: "Synchronize",
            trigger: ".modal footer button.o_online_sync_confirm_accounts",
            run: "click",
        },
        {
            content: "The first synchronization tells how many transactions came in",
            trigger: ".o_notification:contains(Synchronization done):contains(transactions fetched from Sandbox Bank)",
        },
        {
            content: "The dashboard shows the journal connected, with its consent date and count",
            trigger: `${card("Main Bank")} .o_online_sync_status:has(.o_online_sync_link_name:contains(Sandbox Bank)) .badge:contains(Connected)`,
        },
        {
            trigger: `${card("Main Bank")} .o_online_sync_consent_until:contains(Connected until)`,
        },
        {
            trigger: `${card("Main Bank")} .o_online_sync_fetched:contains(transactions fetched)`,
        },
        {
            trigger: `${card("Sandbox Dollar Account")} .o_online_sync_status .badge:contains(Connected)`,
        },
        {
            content: "Open the journal",
            trigger: `${card("Main Bank")} a[name=open_action]`,
            run: "click",
        },
        {
            content: "The synchronized transactions fill the journal's monthly bank statements",
            trigger: ".o_breadcrumb:contains(Bank Statements)",
        },
        {
            trigger: ".o_list_view .o_data_row:nth-child(3):contains(Main Bank (EUR)) td[name=balance_end_real]:contains(€)",
        },
    ],
});

// ---------------------------------------------------------------------- b) the dashboard card
tours.add("account_online_sync_tour_dashboard_sync_now", {
    url: "/odoo/accounting",
    steps: () => [
        {
            content: "The bank journal's card shows its connection",
            trigger: `${card("Sandbox EUR")} .o_online_sync_status:has(.o_online_sync_link_name:contains(Sandbox Bank)) .badge:contains(Connected)`,
        },
        {
            content: "and until when the bank's consent runs",
            trigger: `${card("Sandbox EUR")} .o_online_sync_consent_until:contains(Connected until)`,
        },
        {
            content: "Synchronize Now",
            trigger: `${card("Sandbox EUR")} button.o_online_sync_now:contains(Synchronize Now)`,
            run: "click",
        },
        {
            content: "The notification gives the number of new transactions",
            trigger: ".o_notification:contains(Synchronization done):contains(3 transactions fetched from Sandbox Bank)",
        },
        {
            content: "The card shows the count of the last synchronization",
            trigger: `${card("Sandbox EUR")} .o_online_sync_fetched:contains(3 transactions fetched)`,
        },
    ],
});

// ---------------------------------------------------------------------- c) the connection form
tours.add("account_online_sync_tour_connection_form", {
    url: "/odoo",
    steps: () => [
        ...openConfigurationMenu("menu_online_sync_links", "Online Synchronization: the connections"),
        {
            content: "The connection is listed, connected",
            trigger: ".o_list_view .o_data_row:contains(Sandbox Bank) td[name=state]:contains(Connected)",
        },
        {
            trigger: ".o_list_view .o_data_row:contains(Sandbox Bank) td[name=name]",
            run: "click",
        },
        {
            content: "Its form lists the accounts with their journals",
            trigger: ".o_form_view div[name=account_online_account_ids] .o_data_row:contains(Sandbox Current Account):contains(BE14063123456783)",
        },
        {
            trigger: ".o_form_view .o_form_statusbar button[name=action_update_credentials]:contains(Update Credentials)",
        },
        {
            content: "Fetch Transactions",
            trigger: ".o_form_view .o_form_statusbar button[name=action_fetch_transactions]:contains(Fetch Transactions)",
            run: "click",
        },
        {
            content: "Nothing new at the bank since the first synchronization",
            trigger: ".o_notification:contains(0 transactions fetched from Sandbox Bank)",
        },
        {
            content: "The sync log opens from the smart button",
            trigger: ".o_form_view button[name=action_open_sync_logs]:contains(Sync Logs)",
            run: "click",
        },
        {
            content: "One line per account and run: the first sync and the Fetch Transactions",
            trigger: ".o_list_view .o_data_row:contains(Sandbox Current Account) td[name=trigger]:contains(Manual)",
        },
        {
            trigger: ".o_list_view .o_data_row:contains(Sandbox Dollar Account) td[name=outcome]:contains(Success)",
        },
        {
            content: "Graph view",
            trigger: ".o_switch_view.o_graph",
            run: "click",
        },
        {
            trigger: ".o_graph_view .o_graph_renderer canvas",
        },
        {
            content: "Pivot view",
            trigger: ".o_switch_view.o_pivot",
            run: "click",
        },
        {
            content: "Rows per connection, columns per outcome",
            trigger: ".o_pivot_view .o_pivot th:contains(Sandbox Bank)",
        },
        {
            trigger: ".o_pivot_view .o_pivot th:contains(Success)",
        },
    ],
});

// ---------------------------------------------------------------------- d) Find Duplicates
tours.add("account_online_sync_tour_find_duplicates", {
    url: "/odoo/accounting",
    steps: () => [
        {
            content: "Find Duplicates, from the bank journal's card",
            trigger: `${card("Sandbox EUR")} a.o_online_sync_find_duplicates`,
            run: "click",
        },
        {
            content: "One group found",
            trigger: ".modal .modal-title:contains(Find Duplicates)",
        },
        {
            trigger: ".modal div[name=group_count]:contains(1)",
        },
        {
            content: "The synchronized line is kept",
            trigger: ".modal .o_data_row:has(td[name=origin]:contains(Synchronized)) td[name=to_delete] input:not(:checked)",
        },
        {
            content: "The line typed by hand is proposed for deletion",
            trigger: ".modal .o_data_row:contains(Typed by hand):has(td[name=origin]:contains(Imported or manual)) td[name=to_delete] input:checked",
        },
        {
            content: "Delete it",
            trigger: ".modal footer button.o_online_sync_delete_duplicates",
            run: "click",
        },
        {
            content: "No duplicates are left",
            trigger: ".modal .alert-info:contains(No duplicates found)",
        },
        {
            trigger: ".modal:not(:has(.o_data_row:contains(Typed by hand)))",
        },
    ],
});

// ---------------------------------------------------------------------- consent lifecycle
// As in a), the test's browser presses the button on the bank's consent page between steps.
function statusbarState(state) {
    return `.o_form_view .o_statusbar_status .o_arrow_button_current:contains(${state})`;
}

tours.add("account_online_sync_tour_reconnect", {
    url: "/odoo/accounting",
    steps: () => [
        {
            trigger: `${card("Sandbox EUR")} .o_online_sync_status .badge:contains(Connected)`,
        },
        {
            content: "Synchronize Now, while the bank no longer accepts the consent",
            trigger: `${card("Sandbox EUR")} button.o_online_sync_now`,
            run: "click",
        },
        {
            content: "The failure is explained",
            trigger: ".o_notification:contains(Synchronization failed)",
        },
        {
            content: "The card says the bank is not connected and offers Reconnect Bank",
            trigger: `${card("Sandbox EUR")} .o_online_sync_status .badge:contains(Not Connected)`,
        },
        {
            content: "Reconnect Bank: the browser goes to the bank's consent page",
            trigger: `${card("Sandbox EUR")} button.o_online_sync_reconnect:contains(Reconnect Bank)`,
            run: "click",
        },
        // --- on the bank's site: "Allow access"; back to the same connection ---
        {
            content: "Back from the bank: the same connection, connected again",
            trigger: statusbarState("Connected"),
            timeout: 30000,
        },
        {
            trigger: ".o_form_view h1:contains(Sandbox Bank)",
        },
        {
            content: "The accounts found their journals again",
            trigger: ".o_form_view div[name=account_online_account_ids] .o_data_row:contains(Sandbox Current Account):contains(Sandbox EUR)",
        },
        {
            trigger: ".o-mail-Message:contains(Consent renewed until)",
        },
        {
            content: "Back to the dashboard",
            trigger: '.o_main_navbar [data-menu-xmlid="account.menu_board_journal_1"]',
            run: "click",
        },
        {
            content: "The card shows the connection working again",
            trigger: `${card("Sandbox EUR")} .o_online_sync_status .badge:contains(Connected):not(:contains(Not))`,
        },
    ],
});

tours.add("account_online_sync_tour_update_credentials", {
    url: "/odoo",
    steps: () => [
        ...openConfigurationMenu("menu_online_sync_links", "Online Synchronization: the connections"),
        {
            content: "The consent expires soon",
            trigger: ".o_list_view .o_data_row:contains(Sandbox Bank) td[name=state]:contains(Expiring)",
        },
        {
            trigger: ".o_list_view .o_data_row:contains(Sandbox Bank) td[name=name]",
            run: "click",
        },
        {
            trigger: statusbarState("Expiring"),
        },
        {
            content: "The reminder can be sent now",
            trigger: ".o_form_view .o_form_statusbar button[name=action_send_reminder]:contains(Send Now)",
        },
        {
            content: "Update Credentials: the browser goes to the bank's consent page",
            trigger: ".o_form_view .o_form_statusbar button[name=action_update_credentials]:contains(Update Credentials)",
            run: "click",
        },
        // --- on the bank's site: "Allow access"; back to the same connection ---
        {
            content: "Back from the bank: the consent is renewed",
            trigger: statusbarState("Connected"),
            timeout: 30000,
        },
        {
            trigger: ".o-mail-Message:contains(Consent renewed until)",
        },
        {
            content: "No reminder to send any more",
            trigger: ".o_form_view .o_form_statusbar:not(:has(button[name=action_send_reminder]))",
        },
    ],
});

tours.add("account_online_sync_tour_cancelled_consent", {
    url: "/odoo/accounting",
    steps: () => [
        {
            content: "An empty bank journal offers Connect bank",
            trigger: `${card("Main Bank")} button.o_online_sync_connect:contains(Connect bank)`,
            run: "click",
        },
        {
            content: "Add a Bank Account opens for this journal",
            trigger: ".modal:contains(Add a Bank Account) div[name=journal_id]:contains(Main Bank)",
        },
        {
            content: "Connect to a bank of the list, without searching",
            trigger: ".modal .o_data_row:has(td[name=bic]:contains(SNDBBEB1)) button.o_online_sync_connect_institution",
            run: "click",
        },
        // --- on the bank's site: "Cancel"; Odoo's callback says what happened, with a link back ---
        {
            content: "Back in Odoo: no connection was made",
            trigger: ".o_breadcrumb:contains(Online Synchronization)",
            timeout: 30000,
        },
        {
            trigger: ".o_view_nocontent:contains(Connect your first bank)",
        },
    ],
});
